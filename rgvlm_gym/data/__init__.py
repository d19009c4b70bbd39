"""Datasets: Minari collection, episode records, and conversion to d3rlpy.

Heavy dependencies (minari, d3rlpy, torch) are imported lazily by the functions that need them.
"""

from rgvlm_gym.data.episode import EpisodeRecord

__all__ = ["EpisodeRecord"]
