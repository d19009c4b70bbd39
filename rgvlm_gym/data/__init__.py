"""rgvlm_gym.data (work in progress)."""
