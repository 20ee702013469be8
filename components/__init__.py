"""Thin TFX adapters around `data/` and `retinanet/`.

Artifact types live here (importable as `components.LabelMap`) because the
Vertex compiler resolves custom types by their class path.
"""
from components.artifacts import BoxStatistics, ConversionReport, LabelMap

__all__ = ["BoxStatistics", "ConversionReport", "LabelMap"]
