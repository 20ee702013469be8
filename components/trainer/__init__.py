"""The RetinaNet Trainer component (spec, executor and component kept apart)."""
from components.trainer.component import RetinaNetTrainer

__all__ = ["RetinaNetTrainer"]
