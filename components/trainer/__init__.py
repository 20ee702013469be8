"""The RetinaNet Trainer component (spec, executor and component kept apart; the request
in request.py). `RetinaNetTrainer` loads TFX on first use."""
import importlib

__all__ = ["RetinaNetTrainer"]


def __getattr__(name):
  if name == "RetinaNetTrainer":
    return importlib.import_module("components.trainer.component").RetinaNetTrainer
  raise AttributeError(f"module 'components.trainer' has no attribute {name!r}")
