"""Tasks: the built-in reasoning-gym generators and user datasets, prompts, answers, splits, and
reading the prepared data back."""
