"""Exponential moving average (EMA) of model weights, for evaluation and export.

avg <- avg - (1 - d) * (avg - w) after every update, with the warm-up decay
of tf.train.ExponentialMovingAverage(num_updates=...):
d = min(decay, (1 + n) / (10 + n)), n = updates applied so far. The averages
are keyed by the variable's object path in the model (checkpoint key
`ema/averages/<escaped path>/...`), so export and fine-tuning find them by
name, whatever the variable order.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, List, Mapping, Tuple

import tensorflow as tf


_ONLY_FIRST = tf.VariableAggregation.ONLY_FIRST_REPLICA


def decay_at(decay: float, num_updates: tf.Tensor) -> tf.Tensor:
  n = tf.cast(num_updates, tf.float32)
  return tf.minimum(tf.constant(decay, tf.float32), (1.0 + n) / (10.0 + n))


def _ema_update(average: tf.Variable, value: tf.Tensor, decay: tf.Tensor) -> tf.Operation:
  return average.assign_sub((average - tf.cast(value, average.dtype)) * (1.0 - decay))


class WeightAverage(tf.Module):
  """Moving averages of `variables` ({object path in the model: variable}).

  Create under the strategy scope; call `update()` after each optimizer
  step, in replica context (inside strategy.run) or cross-replica context.
  """

  def __init__(self, variables: Mapping[str, tf.Variable], decay: float,
               name: str = "weight_average"):
    super().__init__(name=name)
    if not 0.0 < decay < 1.0:
      raise ValueError(f"WeightAverage: decay={decay} must be in (0, 1) (optimizer.ema_decay)")
    self.decay = decay
    self.num_updates = tf.Variable(0, dtype=tf.int64, trainable=False, aggregation=_ONLY_FIRST,
                                   name="num_updates")
    averages = {}
    for path, var in variables.items():
      averages[path] = tf.Variable(var.read_value(), trainable=False, aggregation=_ONLY_FIRST,
                                   name="average")
    self.averages = averages
    self._set_pairs([(averages[p], v) for p, v in variables.items()])

  @tf.__internal__.tracking.no_automatic_dependency_tracking
  def _set_pairs(self, pairs: List[Tuple[tf.Variable, tf.Variable]]) -> None:
    # Not tracked: the model variables are saved under `model`, not twice.
    self._pairs = pairs

  def _apply(self, strategy: tf.distribute.Strategy) -> None:
    decay = decay_at(self.decay, self.num_updates)
    for average, var in self._pairs:
      strategy.extended.update(average, _ema_update, args=(var, decay), group=False)
    strategy.extended.update(self.num_updates, lambda v: v.assign_add(1), group=False)

  def update(self) -> None:
    strategy = tf.distribute.get_strategy()
    if tf.distribute.in_cross_replica_context():
      self._apply(strategy)
    else:
      tf.__internal__.distribute.interim.maybe_merge_call(self._apply, strategy)

  def reset(self) -> None:
    """Averages := current weights, counter := 0 (after loading initial weights)."""
    for average, var in self._pairs:
      average.assign(var.read_value())
    self.num_updates.assign(0)

  def copy_to_model(self) -> None:
    """Overwrites the model variables with their averages (export)."""
    for average, var in self._pairs:
      var.assign(average.read_value())

  @contextlib.contextmanager
  def averaged_weights(self) -> Iterator[None]:
    """Inside the block the model holds the averages; the trained values come back after."""
    saved = [var.read_value() for _, var in self._pairs]
    self.copy_to_model()
    try:
      yield
    finally:
      for (_, var), value in zip(self._pairs, saved):
        var.assign(value)
