"""The ALFRED domain: ontology, scenes, tasks, trajectory loading, world semantics, planner, renderer."""
