"""Training and validation loops, checkpoints, run folders and logging."""
