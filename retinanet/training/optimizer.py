"""SGD with momentum or AdamW (+ dynamic loss scaling for float16), weight decay, clipping.

With SGD, weight decay is an explicit loss term, `l2_weight_decay * sum(||w||^2) / 2`
over kernel weights only (conv / dense kernels; not normalization gamma/beta
nor biases), as in the ancestor project's trainer and Model Garden: its gradient is
`l2_weight_decay * w`, Detectron's "WEIGHT_DECAY". AdamW decays the same
kernels inside the optimizer (decoupled, torchvision's --norm-weight-decay 0).
"""
from __future__ import annotations

import re
from typing import Iterable, List, Sequence, Tuple

import tensorflow as tf
import tf_keras

_KERNEL_NAME = re.compile(r"(^|/)(depthwise_|pointwise_)?kernel(:\d+)?$")


def is_kernel(variable: tf.Variable) -> bool:
  """True for conv / dense kernels (the weights that get L2 decay)."""
  return bool(_KERNEL_NAME.search(variable.name))


def kernel_variables(variables: Iterable[tf.Variable]) -> List[tf.Variable]:
  return [v for v in variables if is_kernel(v)]


def l2_regularization(variables: Sequence[tf.Variable], weight_decay: float) -> tf.Tensor:
  """float32 scalar weight_decay * sum(||w||^2) / 2 over `variables`."""
  if not variables or weight_decay == 0.0:
    return tf.constant(0.0, tf.float32)
  return weight_decay * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in variables])


def build_optimizer(learning_rate: tf_keras.optimizers.schedules.LearningRateSchedule, *,
                    momentum: float, mixed_precision: str, optimizer_type: str = "sgd",
                    weight_decay: float = 0.0) -> tf_keras.optimizers.Optimizer:
  """SGD momentum or AdamW; wrapped in a dynamic LossScaleOptimizer for "mixed_float16".

  Create it under the strategy scope, then call `exclude_non_kernels_from_decay`
  before it is built. Clipping is done by the train step on the all-reduced
  gradients (so it sees the global norm), not by the optimizer.
  """
  if optimizer_type == "sgd":
    optimizer = tf_keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum,
                                        jit_compile=False)
  elif optimizer_type == "adamw":
    optimizer = tf_keras.optimizers.AdamW(learning_rate=learning_rate,
                                          weight_decay=weight_decay, jit_compile=False)
  else:
    raise ValueError(f"build_optimizer: optimizer_type={optimizer_type!r} is not sgd or adamw")
  if mixed_precision == "mixed_float16":
    optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer, dynamic=True)
  return optimizer


def exclude_non_kernels_from_decay(optimizer: tf_keras.optimizers.Optimizer,
                                   variables: Sequence[tf.Variable]) -> None:
  """AdamW: decay only kernels (not norm gamma/beta, not biases); no-op otherwise."""
  inner = optimizer.inner_optimizer if is_loss_scaled(optimizer) else optimizer
  if isinstance(inner, tf_keras.optimizers.AdamW):
    inner.exclude_from_weight_decay(var_list=[v for v in variables if not is_kernel(v)])


def is_loss_scaled(optimizer: tf_keras.optimizers.Optimizer) -> bool:
  return isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)


def current_learning_rate(optimizer: tf_keras.optimizers.Optimizer) -> tf.Tensor:
  """The learning rate the next update will use (float32 scalar)."""
  inner = optimizer.inner_optimizer if is_loss_scaled(optimizer) else optimizer
  # `learning_rate` returns the value cached at the last update; `_learning_rate`
  # is the schedule itself.
  lr = getattr(inner, "_learning_rate", None)
  if isinstance(lr, tf_keras.optimizers.schedules.LearningRateSchedule):
    return tf.cast(lr(inner.iterations), tf.float32)
  return tf.cast(inner.learning_rate, tf.float32)


def clip_by_global_norm(gradients: Sequence[tf.Tensor], clip_norm: float
                        ) -> Tuple[List[tf.Tensor], tf.Tensor]:
  """(clipped gradients, norm before clipping); clip_norm <= 0 only measures the norm."""
  norm = tf.linalg.global_norm(gradients)
  if clip_norm <= 0:
    return list(gradients), norm
  clipped, _ = tf.clip_by_global_norm(gradients, clip_norm, use_norm=norm)
  return clipped, norm
