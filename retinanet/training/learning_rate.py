"""Learning-rate schedules: linear warm-up, then piecewise-constant or cosine decay.

Both are tf_keras `LearningRateSchedule`s indexed by the optimizer's step
(`optimizer.iterations`, the number of updates already applied), so a run
resumed from a checkpoint at step s continues with exactly lr(s). They are
registered Keras serializables (`get_config` / `from_config` round-trip).

Warm-up (steps 0 .. warmup_steps - 1):
  lr(s) = warmup_lr + (base_lr - warmup_lr) * s / warmup_steps
so lr(warmup_steps) == base_lr and the curve is continuous.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Sequence

import tensorflow as tf
import tf_keras

from retinanet import config as config_lib


def _with_warmup(step: tf.Tensor, lr: tf.Tensor, base_lr: float, warmup_steps: int,
                 warmup_lr: float) -> tf.Tensor:
  """lr(step) after warm-up; the linear ramp from warmup_lr to base_lr before it."""
  if warmup_steps <= 0:
    return lr
  ramp = warmup_lr + (base_lr - warmup_lr) * step / float(warmup_steps)
  return tf.where(step < float(warmup_steps), ramp, lr)


@tf_keras.saving.register_keras_serializable(package="retinanet")
class WarmupPiecewiseConstant(tf_keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up, then base_lr * decay_rates[i] from step boundaries[i] on (inclusive).

  Example: base 0.08, boundaries (15000, 20000), decay_rates (0.1, 0.01):
  lr = 0.08 for warmup <= s < 15000, 0.008 for 15000 <= s < 20000, 0.0008 after.
  """

  def __init__(self, base_learning_rate: float, warmup_steps: int, warmup_learning_rate: float,
               boundaries: Sequence[int], decay_rates: Sequence[float]):
    super().__init__()
    if len(boundaries) != len(decay_rates):
      raise ValueError(f"WarmupPiecewiseConstant: {len(boundaries)} boundaries but "
                       f"{len(decay_rates)} decay_rates; give one rate per boundary")
    if list(boundaries) != sorted(boundaries):
      raise ValueError(f"WarmupPiecewiseConstant: boundaries {list(boundaries)} must increase")
    if warmup_steps < 0:
      raise ValueError(f"WarmupPiecewiseConstant: warmup_steps={warmup_steps} must be >= 0")
    self.base_learning_rate = float(base_learning_rate)
    self.warmup_steps = int(warmup_steps)
    self.warmup_learning_rate = float(warmup_learning_rate)
    self.boundaries = [int(b) for b in boundaries]
    self.decay_rates = [float(r) for r in decay_rates]

  def __call__(self, step: Any) -> tf.Tensor:
    step = tf.cast(step, tf.float32)
    lr = tf.constant(self.base_learning_rate, tf.float32)
    for boundary, rate in zip(self.boundaries, self.decay_rates):
      lr = tf.where(step >= float(boundary), self.base_learning_rate * rate, lr)
    return _with_warmup(step, lr, self.base_learning_rate, self.warmup_steps,
                        self.warmup_learning_rate)

  def get_config(self) -> Dict[str, Any]:
    return {"base_learning_rate": self.base_learning_rate, "warmup_steps": self.warmup_steps,
            "warmup_learning_rate": self.warmup_learning_rate,
            "boundaries": list(self.boundaries), "decay_rates": list(self.decay_rates)}


@tf_keras.saving.register_keras_serializable(package="retinanet")
class WarmupCosine(tf_keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up, then cosine decay from base_lr to base_lr * alpha at total_steps.

  For warmup <= s <= total: t = (s - warmup) / (total - warmup),
  lr = base * (alpha + (1 - alpha) * 0.5 * (1 + cos(pi * t))); lr = base * alpha after.
  """

  def __init__(self, base_learning_rate: float, warmup_steps: int, warmup_learning_rate: float,
               total_steps: int, alpha: float = 0.0):
    super().__init__()
    if not 0 <= warmup_steps <= total_steps:
      raise ValueError(f"WarmupCosine: need 0 <= warmup_steps ({warmup_steps}) <= total_steps "
                       f"({total_steps})")
    self.base_learning_rate = float(base_learning_rate)
    self.warmup_steps = int(warmup_steps)
    self.warmup_learning_rate = float(warmup_learning_rate)
    self.total_steps = int(total_steps)
    self.alpha = float(alpha)

  def __call__(self, step: Any) -> tf.Tensor:
    step = tf.cast(step, tf.float32)
    decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
    t = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
    cosine = 0.5 * (1.0 + tf.cos(math.pi * t))
    lr = self.base_learning_rate * (self.alpha + (1.0 - self.alpha) * cosine)
    return _with_warmup(step, lr, self.base_learning_rate, self.warmup_steps,
                        self.warmup_learning_rate)

  def get_config(self) -> Dict[str, Any]:
    return {"base_learning_rate": self.base_learning_rate, "warmup_steps": self.warmup_steps,
            "warmup_learning_rate": self.warmup_learning_rate, "total_steps": self.total_steps,
            "alpha": self.alpha}


def build_learning_rate(optimizer_config: config_lib.OptimizerConfig, total_steps: int
                        ) -> tf_keras.optimizers.schedules.LearningRateSchedule:
  """The schedule named by optimizer_config.schedule ("piecewise" or "cosine")."""
  o = optimizer_config
  if o.schedule == "piecewise":
    return WarmupPiecewiseConstant(o.base_learning_rate, o.warmup_steps, o.warmup_learning_rate,
                                   o.boundaries, o.decay_rates)
  if o.schedule == "cosine":
    return WarmupCosine(o.base_learning_rate, o.warmup_steps, o.warmup_learning_rate,
                        total_steps, o.cosine_alpha)
  raise ValueError(f"optimizer.schedule={o.schedule!r} is not one of {config_lib.LR_SCHEDULES}")
