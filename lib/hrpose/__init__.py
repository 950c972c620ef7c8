"""hrpose: the HRNet family of 2-D human pose estimators in one PyTorch codebase."""

__version__ = "0.1.0"
