"""Sub-commands of the ``rgvlm`` CLI, one module each (``add_arguments`` + ``run``)."""
