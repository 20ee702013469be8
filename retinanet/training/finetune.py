"""Fine-tuning: initialize a model from another run's checkpoint, freeze by regex.

Weights are matched by object path (`backbone/conv2_block1/conv1/kernel`),
not by variable order. Only the class head's final layer may differ in
shape (a different class count): it is re-initialized; any other missing
variable or shape mismatch is an error, because silently training a
half-initialized detector wastes a run. Optimizer state, step and EMA
counters are not taken over: fine-tuning starts at step 0.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from retinanet.training import checkpointing

logger = logging.getLogger(__name__)

# Where the model sits in the checkpoints we accept: a training checkpoint
# (tf.train.Checkpoint(model=...)) or one written with the model as root.
_MODEL_PREFIXES = ("model", "")


@dataclasses.dataclass
class FinetuneReport:
  """What `init_from_checkpoint` and the freeze patterns did (object paths)."""
  source: str
  restored: List[str] = dataclasses.field(default_factory=list)
  reinitialized: List[str] = dataclasses.field(default_factory=list)
  frozen: List[str] = dataclasses.field(default_factory=list)
  # Restored from the checkpoint's EMA averages instead of the raw weights.
  from_ema: List[str] = dataclasses.field(default_factory=list)

  def summary(self) -> str:
    return (f"fine-tuning from {self.source}: restored {len(self.restored)} variables "
            f"({len(self.from_ema)} from EMA averages), re-initialized {len(self.reinitialized)} "
            f"{self.reinitialized}, frozen {len(self.frozen)}")

  def log(self) -> None:
    logger.info(self.summary())
    if self.frozen:
      logger.info("Frozen variables: %s", self.frozen)


def freeze_mask(named_variables: Mapping[str, tf.Variable], patterns: Sequence[str]) -> List[str]:
  """Paths of the variables whose object path or variable name matches a regex (re.search)."""
  compiled = []
  for pattern in patterns:
    try:
      compiled.append(re.compile(pattern))
    except re.error as e:
      raise ValueError(f"freeze pattern {pattern!r} is not a valid regular expression: {e}") from e
  return [path for path, var in named_variables.items()
          if any(c.search(path) or c.search(var.name) for c in compiled)]


def _model_prefix(paths: Sequence[str], available: Mapping[str, object], source: str) -> str:
  counts = {prefix: sum(checkpointing.checkpoint_key(prefix, p) in available for p in paths)
            for prefix in _MODEL_PREFIXES}
  best = max(counts, key=counts.get)
  if counts[best] == 0:
    example = sorted(k for k in available if not k.startswith("_"))[:3]
    raise ValueError(f"checkpoint {source} holds none of this model's variables (keys look like "
                     f"{example}); expected a RetinaNet training checkpoint")
  return best


def init_from_checkpoint(model: tf.Module, path: str, *,
                         class_prediction_variables: Sequence[tf.Variable],
                         reinitialize_class_prediction: Optional[Callable[[], None]] = None,
                         prefer_ema: bool = True) -> FinetuneReport:
  """Restores `model` from the checkpoint at/under `path` for fine-tuning.

  Args:
    model: built model (e.g. under the training strategy scope).
    path: checkpoint prefix, a model_dir, or a pushed model dir holding one
      (see checkpointing.find_checkpoint).
    class_prediction_variables: the class head's final layer variables
      (factory.class_prediction_variables); the only ones allowed to differ in shape.
    reinitialize_class_prediction: called when they differ, to reset them to
      their initializers (factory.reinitialize_class_prediction).
    prefer_ema: take the checkpoint's EMA averages where it has them.
  Raises ValueError naming every missing variable / other shape mismatch.
  """
  prefix = checkpointing.find_checkpoint(path)
  reader = tf.train.load_checkpoint(prefix)
  shapes = reader.get_variable_to_shape_map()
  named = checkpointing.variable_paths(model)
  model_prefix = _model_prefix(list(named), shapes, prefix)
  head_ids = {id(v) for v in class_prediction_variables}
  report = FinetuneReport(source=prefix)
  plan: Dict[str, str] = {}
  problems = []
  for path_, var in named.items():
    key = checkpointing.checkpoint_key(model_prefix, path_)
    ema_key = checkpointing.checkpoint_key(checkpointing.EMA_CHECKPOINT_PREFIX,
                                           checkpointing.ema_average_path(path_))
    if prefer_ema and model_prefix == "model" and ema_key in shapes:
      key = ema_key
    if key not in shapes:
      problems.append(f"{path_}: not in the checkpoint")
      continue
    if list(shapes[key]) != var.shape.as_list():
      if id(var) in head_ids:
        report.reinitialized.append(path_)
        continue
      problems.append(f"{path_}: checkpoint shape {shapes[key]} != model shape "
                      f"{var.shape.as_list()}")
      continue
    plan[path_] = key
  if problems:
    raise ValueError(f"cannot fine-tune from {prefix}: {len(problems)} variables do not match "
                     f"(only the class head's final layer may differ): {problems[:10]}")
  if report.reinitialized and len(report.reinitialized) != len(class_prediction_variables):
    raise ValueError(f"cannot fine-tune from {prefix}: only part of the class prediction layer "
                     f"differs in shape ({report.reinitialized})")
  for path_, key in plan.items():
    var = named[path_]
    var.assign(np.asarray(reader.get_tensor(key), dtype=var.dtype.as_numpy_dtype))
    report.restored.append(path_)
    if key.startswith(checkpointing.EMA_CHECKPOINT_PREFIX + "/"):
      report.from_ema.append(path_)
  if report.reinitialized and reinitialize_class_prediction is not None:
    reinitialize_class_prediction()
  return report
