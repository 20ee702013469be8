"""Thin TFX adapters around `data/` and `retinanet/`."""
