"""Training (one process or many, torchrun) and validation loops, checkpoints, run folders."""
