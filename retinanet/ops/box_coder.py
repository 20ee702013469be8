"""The one box coder: yxyx boxes <-> regression deltas relative to anchors.

Deltas are [dy, dx, dh, dw] (the Faster R-CNN parametrisation), divided by
`variances` (= 1 / box coder weights). The default (1, 1, 1, 1) gives the
unscaled deltas of Model Garden (box_coder_weights=None), detectron2 and
torchvision RetinaNet; (0.1, 0.1, 0.2, 0.2) is the ancestor project's scaled variant
(config.check_box_loss_convention keeps the loss settings consistent):

  dy = (cy_box - cy_anchor) / h_anchor / variances[0]
  dx = (cx_box - cx_anchor) / w_anchor / variances[1]
  dh = log(h_box / h_anchor) / variances[2]
  dw = log(w_box / w_anchor) / variances[3]

Invariant (tested): decode(encode(b, a), a) == b for boxes of positive size
whose log size ratio to the anchor is below DELTA_CLAMP. All math is float32.
"""
from __future__ import annotations

import math
from typing import Sequence

import tensorflow as tf

from retinanet.ops import box_ops

DEFAULT_VARIANCES = (1.0, 1.0, 1.0, 1.0)
# decode clamps the log size ratio (dh * variance) so exp() cannot overflow:
# a box is at most 1000 / 16 times its anchor's side (Detectron, Model Garden).
DELTA_CLAMP = math.log(1000.0 / 16.0)


def _check_variances(variances: Sequence[float]) -> tf.Tensor:
  if len(variances) != 4 or any(v <= 0 for v in variances):
    raise ValueError(f"box_coder: variances={tuple(variances)} must be 4 positive numbers")
  return tf.constant(variances, tf.float32)


def encode(boxes: tf.Tensor, anchors: tf.Tensor,
           variances: Sequence[float] = DEFAULT_VARIANCES) -> tf.Tensor:
  """Regression targets of yxyx `boxes` [..., 4] w.r.t. yxyx `anchors` [..., 4].

  Returns float32 deltas [..., 4] = [dy, dx, dh, dw] (module docstring).
  Anchors must have positive size; boxes should too (the log of a zero size
  is clamped by a tiny epsilon, giving a large but finite delta).
  """
  scale = _check_variances(variances)
  boxes = tf.cast(boxes, tf.float32)
  anchors = tf.cast(anchors, tf.float32)
  cy, cx, h, w = tf.unstack(box_ops.yxyx_to_cycxhw(boxes), axis=-1)
  cya, cxa, ha, wa = tf.unstack(box_ops.yxyx_to_cycxhw(anchors), axis=-1)
  eps = tf.constant(1e-8, tf.float32)
  h = tf.maximum(h, eps)
  w = tf.maximum(w, eps)
  deltas = tf.stack([(cy - cya) / ha, (cx - cxa) / wa, tf.math.log(h / ha), tf.math.log(w / wa)],
                    axis=-1)
  return deltas / scale


def decode(deltas: tf.Tensor, anchors: tf.Tensor,
           variances: Sequence[float] = DEFAULT_VARIANCES) -> tf.Tensor:
  """Boxes from `deltas` [..., 4] and yxyx `anchors` (broadcastable) -> float32 yxyx [..., 4].

  The log size ratios are clamped to DELTA_CLAMP before exp(); boxes are not
  clipped to the image (see box_ops.clip_boxes_yxyx).
  """
  scale = _check_variances(variances)
  deltas = tf.cast(deltas, tf.float32) * scale
  anchors = tf.cast(anchors, tf.float32)
  cya, cxa, ha, wa = tf.unstack(box_ops.yxyx_to_cycxhw(anchors), axis=-1)
  dy, dx, dh, dw = tf.unstack(deltas, axis=-1)
  dh = tf.minimum(dh, DELTA_CLAMP)
  dw = tf.minimum(dw, DELTA_CLAMP)
  cy = dy * ha + cya
  cx = dx * wa + cxa
  h = tf.exp(dh) * ha
  w = tf.exp(dw) * wa
  return tf.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)
