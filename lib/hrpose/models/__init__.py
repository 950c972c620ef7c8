"""Pose models: backbones, heads, and build_model (MODEL.NAME -> model)."""

from .registry import MODEL_BUILDERS, build_model

__all__ = ["MODEL_BUILDERS", "build_model"]
