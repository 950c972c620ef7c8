"""Datasets, their keypoint metadata, and the samplers that feed the models."""
