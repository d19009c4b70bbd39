"""rgvlm_gym.rl (work in progress)."""
