"""rgvlm_gym.rewards (work in progress)."""
