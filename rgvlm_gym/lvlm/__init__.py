"""rgvlm_gym.lvlm (work in progress)."""
