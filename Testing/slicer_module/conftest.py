"""The Slicer-module tests' fixtures: ``mrml_scene`` (a real MRML scene, see real_mrml.py)."""

from real_mrml import mrml_scene  # noqa: F401
