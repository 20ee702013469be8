"""Thin TFX adapters around `data/` and `retinanet/`.

Artifact types are importable as `components.LabelMap` (the Vertex compiler resolves
custom types by their class path); they load TFX on first use, so importing a
light module of this package (e.g. `components.trainer.request`) loads nothing.
"""
import importlib

import retinanet  # noqa: F401  (selects Keras 2 before anything loads TensorFlow)

__all__ = ["BoxStatistics", "ConversionReport", "LabelMap"]


def __getattr__(name):
  if name in __all__:
    return getattr(importlib.import_module("components.artifacts"), name)
  raise AttributeError(f"module 'components' has no attribute {name!r}")
