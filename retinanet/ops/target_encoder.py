"""Training targets of one image: match anchors, then encode classes and boxes.

Pure tensor code with static shapes ([N] anchors in, [N] targets out), so it
runs inside tf.data (graph mode) as well as eagerly.
"""
from __future__ import annotations

from typing import Dict, Sequence

import tensorflow as tf

from retinanet.ops import box_coder, box_ops, matcher

# Class of padding rows in gt_classes (any negative class counts as padding).
PADDING_CLASS = -1


def encode_targets(anchors: tf.Tensor, gt_boxes: tf.Tensor, gt_classes: tf.Tensor,
                   gt_is_crowd: tf.Tensor, positive_iou: float, negative_iou: float,
                   variances: Sequence[float] = box_coder.DEFAULT_VARIANCES,
                   allow_low_quality_matches: bool = False,
                   crowd_ioa: float = 0.7,
                   low_quality_rule: str = "all_ties") -> Dict[str, tf.Tensor]:
  """Targets for N anchors from M ground-truth boxes (M may be 0).

  Args:
    anchors: float [N, 4] yxyx pixels (anchors.generate_anchors).
    gt_boxes: float [M, 4] yxyx pixels of the model input.
    gt_classes: int [M] contiguous class indices 0..C-1; rows < 0 (PADDING_CLASS) are padding.
    gt_is_crowd: bool [M] crowd flags (matcher docstring for how they are used).
    positive_iou, negative_iou, allow_low_quality_matches, crowd_ioa, low_quality_rule:
      see matcher.match.
    variances: box coder variances.

  Returns:
    class_targets: int32 [N], the matched class for POSITIVE anchors, 0 otherwise.
    box_targets: float32 [N, 4] box_coder.encode deltas for POSITIVE anchors, 0 otherwise.
    match_state: int32 [N], matcher.POSITIVE / NEGATIVE / IGNORED.
  """
  anchors = tf.cast(anchors, tf.float32)
  gt_boxes = tf.reshape(tf.cast(gt_boxes, tf.float32), [-1, 4])
  gt_classes = tf.reshape(tf.cast(gt_classes, tf.int32), [-1])
  gt_is_crowd = tf.reshape(tf.cast(gt_is_crowd, tf.bool), [-1])
  # Drop padding rows first: the [N, M] IoU matrix then costs only the real boxes.
  keep = tf.reshape(tf.where(gt_classes >= 0), [-1])
  gt_boxes = tf.gather(gt_boxes, keep)
  gt_classes = tf.gather(gt_classes, keep)
  gt_is_crowd = tf.gather(gt_is_crowd, keep)
  gt_valid = tf.ones_like(gt_is_crowd)

  iou = box_ops.pairwise_iou_yxyx(anchors, gt_boxes)
  anchor_ioa = box_ops.pairwise_ioa_yxyx(anchors, gt_boxes)
  result = matcher.match(iou, anchor_ioa, gt_valid, gt_is_crowd, positive_iou, negative_iou,
                         allow_low_quality_matches, crowd_ioa, low_quality_rule)
  positive = tf.equal(result.match_state, matcher.POSITIVE)

  # One dummy row so the gathers stay in range when M == 0.
  safe_boxes = tf.concat([gt_boxes, tf.constant([[0.0, 0.0, 1.0, 1.0]], tf.float32)], axis=0)
  safe_classes = tf.concat([gt_classes, tf.zeros([1], tf.int32)], axis=0)
  matched_boxes = tf.gather(safe_boxes, result.matched_gt_index)
  matched_classes = tf.gather(safe_classes, result.matched_gt_index)

  deltas = box_coder.encode(matched_boxes, anchors, variances)
  box_targets = tf.where(positive[:, None], deltas, tf.zeros_like(deltas))
  class_targets = tf.where(positive, matched_classes, tf.zeros_like(matched_classes))
  return {
      "class_targets": class_targets,
      "box_targets": box_targets,
      "match_state": result.match_state,
  }
