"""RetinaNet losses: sigmoid focal loss + a box loss (Huber or GIoU), normalized by positives.

All losses are computed in float32 (inputs are cast, so mixed-precision logits
are fine). `retinanet_loss` returns sums over the local batch divided by a
normalizer; under a distribution strategy pass `normalizer` = the number of
positive anchors of the *global* batch (e.g. a cross-replica sum of
`num_positive_anchors`) so that summing replica losses gives the global loss.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import tensorflow as tf

from retinanet.ops import box_coder, box_ops, matcher

BOX_LOSSES = ("huber", "giou")

Scalar = Union[float, tf.Tensor]


def sigmoid_focal_loss(logits: tf.Tensor, targets: tf.Tensor, alpha: Optional[float] = 0.25,
                       gamma: float = 2.0) -> tf.Tensor:
  """Element-wise sigmoid focal loss (Lin et al. 2017), float32, same shape as `logits`.

  FL = -alpha_t * (1 - p_t)**gamma * log(p_t), p_t = p if target == 1 else 1 - p,
  alpha_t = alpha for targets 1 and 1 - alpha for targets 0; alpha=None means no
  alpha weighting (gamma=0, alpha=None is binary cross-entropy). `targets` are
  0/1 of the same shape as `logits`.
  """
  logits = tf.cast(logits, tf.float32)
  targets = tf.cast(targets, tf.float32)
  bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
  p = tf.sigmoid(logits)
  p_t = targets * p + (1.0 - targets) * (1.0 - p)
  loss = tf.pow(1.0 - p_t, gamma) * bce if gamma != 0 else bce
  if alpha is not None:
    loss *= targets * alpha + (1.0 - targets) * (1.0 - alpha)
  return loss


def huber_loss(predictions: tf.Tensor, targets: tf.Tensor, delta: float = 0.1) -> tf.Tensor:
  """Element-wise Huber loss, float32: 0.5 x**2 if |x| <= delta else delta * (|x| - 0.5 delta).

  This is tf_keras.losses.Huber before its mean over the last axis.
  """
  x = tf.abs(tf.cast(predictions, tf.float32) - tf.cast(targets, tf.float32))
  quadratic = tf.minimum(x, delta)
  return 0.5 * quadratic * quadratic + delta * (x - quadratic)


def giou_loss(predicted_deltas: tf.Tensor, target_deltas: tf.Tensor, anchors: tf.Tensor,
              variances: Sequence[float] = box_coder.DEFAULT_VARIANCES) -> tf.Tensor:
  """1 - GIoU of the boxes decoded from predicted and target deltas [..., N, 4] -> [..., N].

  Both are decoded against the same yxyx `anchors` [N, 4] (box_coder.decode),
  so the target boxes are the matched ground truth (decode(encode(b)) == b).
  float32; in [0, 2], 0 for a perfect box (torchvision's generalized_box_iou_loss).
  """
  predicted = box_coder.decode(predicted_deltas, anchors, variances)
  targets = box_coder.decode(target_deltas, anchors, variances)
  return 1.0 - box_ops.generalized_iou_yxyx(predicted, targets)


def num_positive_anchors(match_state: tf.Tensor) -> tf.Tensor:
  """float32 scalar: the number of POSITIVE entries of match_state [B, N] (or [N])."""
  return tf.reduce_sum(tf.cast(tf.equal(match_state, matcher.POSITIVE), tf.float32))


def retinanet_loss(class_logits: tf.Tensor, box_outputs: tf.Tensor, class_targets: tf.Tensor,
                   box_targets: tf.Tensor, match_state: tf.Tensor, alpha: float = 0.25,
                   gamma: float = 2.0, delta: float = 0.1, box_loss_weight: float = 50.0,
                   normalizer: Optional[Scalar] = None, box_loss: str = "huber",
                   anchors: Optional[tf.Tensor] = None,
                   variances: Sequence[float] = box_coder.DEFAULT_VARIANCES
                   ) -> Dict[str, tf.Tensor]:
  """The RetinaNet training loss of a batch.

  Args:
    class_logits: [B, N, C] class logits (any float dtype).
    box_outputs: [B, N, 4] predicted deltas (box_coder parametrisation).
    class_targets: int [B, N] class index for POSITIVE anchors (target_encoder).
    box_targets: float [B, N, 4] encoded deltas for POSITIVE anchors.
    match_state: int [B, N] matcher.POSITIVE / NEGATIVE / IGNORED.
    alpha, gamma: focal loss parameters.
    delta: Huber delta of the box loss.
    box_loss_weight: weight of the box loss in total_loss.
    normalizer: divisor of both losses. None = this batch's positives; pass the
      global-batch positive count (or a moving average, LossNormalizer) under a
      distribution strategy. Clamped to >= 1 so zero positives stay finite.
    box_loss: "huber" (on the deltas, with `delta`) or "giou" (`giou_loss` on
      the decoded boxes, which needs `anchors` [N, 4] and the coder `variances`).

  Returns float32 scalars:
    class_loss: focal loss summed over all C outputs of POSITIVE and NEGATIVE
      anchors (IGNORED anchors contribute nothing) / normalizer.
    box_loss: Huber loss of POSITIVE anchors, averaged over the 4 coordinates
      and summed over anchors (tf_keras Huber, as in Model Garden) / normalizer;
      or the GIoU loss of POSITIVE anchors summed / normalizer (torchvision).
    total_loss: class_loss + box_loss_weight * box_loss.
    num_positives: POSITIVE anchors in this (local) batch.
  """
  if box_loss not in BOX_LOSSES:
    raise ValueError(f"retinanet_loss: box_loss={box_loss!r} is not one of {BOX_LOSSES}")
  if box_loss == "giou" and anchors is None:
    raise ValueError("retinanet_loss: box_loss='giou' decodes boxes and needs the anchors")
  class_logits = tf.cast(class_logits, tf.float32)
  num_classes = tf.shape(class_logits)[-1]
  positive = tf.equal(match_state, matcher.POSITIVE)
  not_ignored = tf.cast(tf.not_equal(match_state, matcher.IGNORED), tf.float32)
  num_positives = num_positive_anchors(match_state)
  if normalizer is None:
    normalizer = num_positives
  normalizer = tf.maximum(tf.cast(normalizer, tf.float32), 1.0)

  one_hot = tf.one_hot(tf.cast(class_targets, tf.int32), num_classes, dtype=tf.float32)
  one_hot *= tf.cast(positive, tf.float32)[..., None]
  focal = sigmoid_focal_loss(class_logits, one_hot, alpha, gamma)
  class_loss = tf.reduce_sum(focal * not_ignored[..., None]) / normalizer

  if box_loss == "giou":
    per_anchor = giou_loss(box_outputs, box_targets, anchors, variances)
  else:
    per_anchor = tf.reduce_mean(huber_loss(box_outputs, box_targets, delta), axis=-1)
  # tf.where, not a product: a non-positive anchor's decoded box may be degenerate.
  per_anchor = tf.where(positive, per_anchor, tf.zeros_like(per_anchor))
  box_value = tf.reduce_sum(per_anchor) / normalizer
  return {
      "class_loss": class_loss,
      "box_loss": box_value,
      "total_loss": class_loss + box_loss_weight * box_value,
      "num_positives": num_positives,
  }


def update_loss_normalizer(previous: Scalar, num_positives: Scalar, momentum: float) -> tf.Tensor:
  """Detectron2's moving-average normalizer: momentum * previous + (1 - momentum) * num_positives."""
  if not 0.0 <= momentum < 1.0:
    raise ValueError(f"update_loss_normalizer: momentum={momentum} must be in [0, 1)")
  previous = tf.cast(previous, tf.float32)
  num_positives = tf.cast(num_positives, tf.float32)
  return momentum * previous + (1.0 - momentum) * num_positives


class LossNormalizer(tf.Module):
  """Stateful moving average of the positive-anchor count (Detectron2, initial value 100).

  Create it under the distribution strategy scope and call it with the global
  positive count (identical on every replica): `normalizer = ln(num_pos)`.
  With momentum 0 it returns num_positives unchanged.
  """

  def __init__(self, momentum: float, initial_value: float = 100.0, name: str = "loss_normalizer"):
    super().__init__(name=name)
    if not 0.0 <= momentum < 1.0:
      raise ValueError(f"LossNormalizer: momentum={momentum} must be in [0, 1)")
    self.momentum = momentum
    self.value = tf.Variable(initial_value, dtype=tf.float32, trainable=False,
                             aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                             name="value")

  def __call__(self, num_positives: Scalar) -> tf.Tensor:
    """Updates the average with num_positives and returns the new value (float32 scalar)."""
    new_value = update_loss_normalizer(self.value, num_positives, self.momentum)
    self.value.assign(new_value)
    return tf.identity(new_value)
