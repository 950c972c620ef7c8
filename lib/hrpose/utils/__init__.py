"""Geometry, visualisation and small shared helpers."""
