"""SGD with momentum (+ dynamic loss scaling for float16), L2 weight decay, clipping.

Weight decay is an explicit loss term, `l2_weight_decay * sum(||w||^2) / 2`
over kernel weights only (conv / dense kernels; not batch-norm gamma/beta nor
biases), as in the seed trainer and Model Garden: its gradient is
`l2_weight_decay * w`, Detectron's "WEIGHT_DECAY".
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
                    momentum: float, mixed_precision: str) -> tf_keras.optimizers.Optimizer:
  """SGD momentum; wrapped in a dynamic LossScaleOptimizer for "mixed_float16".

  Create it under the strategy scope. Clipping is done by the train step on
  the all-reduced gradients (so it sees the global norm), not by the optimizer.
  """
  optimizer = tf_keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum,
                                      jit_compile=False)
  if mixed_precision == "mixed_float16":
    optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer, dynamic=True)
  return optimizer


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
