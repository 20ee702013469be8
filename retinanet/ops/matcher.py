"""IoU matcher: assigns each anchor a match state and a ground-truth box.

Rules, for anchor i and its best IoU `best` over the matchable ground truth
(valid rows that are not crowd):
  * best >= positive_iou                 -> POSITIVE, matched to that box;
  * best <  negative_iou                 -> NEGATIVE (background);
  * otherwise (the band in between)      -> IGNORED (no loss at all).
  * allow_low_quality_matches, low_quality_rule "all_ties": every anchor whose
    IoU with some matchable box equals that box's highest IoU over all anchors
    (ties included, > 0) also becomes POSITIVE, matched to its own best box
    (Detectron2's rule). "first_argmax": only each box's first best anchor
    (tf.argmax, the lowest anchor index on ties) becomes POSITIVE, matched to
    that box, the lowest box index when boxes share it (Model Garden's
    BoxMatcher(force_match_for_each_col=True); it also forces a box without
    any overlap onto anchor 0, which this keeps out: IoU must be > 0).
  * Crowd boxes are never matched. An anchor that would be NEGATIVE but whose
    intersection with a crowd box covers at least `crowd_ioa` of the anchor's
    own area becomes IGNORED: the crowd region is neither trained as object
    nor as background (Detectron's rule, CROWD_FILTER_THRESH = 0.7; IoU would
    miss small anchors inside a large crowd box). Positives from normal boxes
    keep priority over a crowd overlap.
  * Invalid (padding) rows never match; an image without matchable boxes
    gives all NEGATIVE (except crowd overlaps, IGNORED).
Ties between boxes go to the lowest ground-truth index.
"""
from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from retinanet.config import LOW_QUALITY_RULES

POSITIVE = 1
NEGATIVE = 0
IGNORED = -1
MATCH_STATES = (POSITIVE, NEGATIVE, IGNORED)
# matched_gt_index of every anchor that is not POSITIVE (a safe gather index;
# consumers must look at match_state).
NO_MATCH_INDEX = 0
# Similarity given to ground-truth columns that cannot match: below any IoU.
_NO_OVERLAP = -1.0


class MatchResult(NamedTuple):
  """matched_gt_index [N] int32 (NO_MATCH_INDEX unless POSITIVE); match_state [N] int32."""
  matched_gt_index: tf.Tensor
  match_state: tf.Tensor


def _masked_with_sentinel(iou: tf.Tensor, columns: tf.Tensor) -> tf.Tensor:
  """iou [N, M] with non-`columns` set to _NO_OVERLAP, plus one sentinel column -> [N, M + 1].

  The sentinel keeps reductions defined when M == 0 (images with no boxes).
  """
  masked = tf.where(columns[None, :], iou, tf.constant(_NO_OVERLAP, iou.dtype))
  sentinel = tf.fill([tf.shape(iou)[0], 1], tf.constant(_NO_OVERLAP, iou.dtype))
  return tf.concat([masked, sentinel], axis=1)


def _first_argmax_matches(scores: tf.Tensor) -> tuple:
  """(forced [N] bool, forcing box [N] int32) of scores [N, M + 1]: each box column with
  an overlap forces its first argmax anchor; an anchor forced by several boxes takes the
  lowest box index."""
  num_anchors = tf.shape(scores)[0]
  num_columns = tf.shape(scores)[1]
  best_anchor = tf.argmax(scores, axis=0, output_type=tf.int32)  # [M + 1]
  overlaps = tf.reduce_max(scores, axis=0) > 0.0
  # Columns without overlap go to an extra segment that is dropped.
  segment = tf.where(overlaps, best_anchor, num_anchors)
  forcing = tf.math.unsorted_segment_min(tf.range(num_columns), segment, num_anchors + 1)
  forcing = forcing[:num_anchors]  # int32 max where no box forces the anchor
  forced = forcing < num_columns
  return forced, tf.where(forced, forcing, 0)


def match(iou: tf.Tensor, anchor_ioa: tf.Tensor, gt_valid: tf.Tensor, gt_is_crowd: tf.Tensor,
          positive_iou: float, negative_iou: float, allow_low_quality_matches: bool = False,
          crowd_ioa: float = 0.7, low_quality_rule: str = "all_ties") -> MatchResult:
  """Matches N anchors to M ground-truth boxes given their IoU matrix.

  Args:
    iou: float [N, M] IoU of anchors (rows) with ground-truth boxes (columns).
    anchor_ioa: float [N, M] intersection / anchor area (box_ops.pairwise_ioa_yxyx
      of anchors and boxes); only its crowd columns are read.
    gt_valid: bool [M]; False for padding rows.
    gt_is_crowd: bool [M]; True for crowd regions.
    positive_iou: IoU at or above which an anchor is POSITIVE (0.5).
    negative_iou: IoU below which an anchor is NEGATIVE (0.4); in between IGNORED.
    allow_low_quality_matches: also make each box's best anchor(s) POSITIVE.
    low_quality_rule: which best anchors, LOW_QUALITY_RULES (module docstring).
    crowd_ioa: anchor_ioa with a crowd box at or above which a NEGATIVE anchor
      becomes IGNORED.

  Returns:
    MatchResult(matched_gt_index [N] int32, match_state [N] int32 in MATCH_STATES).
  """
  if not 0.0 <= negative_iou <= positive_iou:
    raise ValueError(f"matcher: need 0 <= negative_iou ({negative_iou}) <= positive_iou "
                     f"({positive_iou})")
  iou = tf.cast(iou, tf.float32)
  gt_valid = tf.cast(gt_valid, tf.bool)
  gt_is_crowd = tf.cast(gt_is_crowd, tf.bool)
  matchable = tf.logical_and(gt_valid, tf.logical_not(gt_is_crowd))
  crowd = tf.logical_and(gt_valid, gt_is_crowd)

  scores = _masked_with_sentinel(iou, matchable)  # [N, M + 1]
  best_iou = tf.reduce_max(scores, axis=1)
  best_index = tf.argmax(scores, axis=1, output_type=tf.int32)
  state = tf.where(best_iou >= positive_iou, POSITIVE,
                   tf.where(best_iou < negative_iou, NEGATIVE, IGNORED))

  if low_quality_rule not in LOW_QUALITY_RULES:
    raise ValueError(f"matcher: low_quality_rule={low_quality_rule!r} is not one of "
                     f"{LOW_QUALITY_RULES}")
  if allow_low_quality_matches and low_quality_rule == "all_ties":
    best_per_gt = tf.reduce_max(scores, axis=0)  # [M + 1]; sentinel column stays < 0
    is_best = tf.logical_and(scores >= best_per_gt[None, :], best_per_gt[None, :] > 0.0)
    state = tf.where(tf.reduce_any(is_best, axis=1), POSITIVE, state)
  elif allow_low_quality_matches:
    forced, forcing_gt = _first_argmax_matches(scores)
    state = tf.where(forced, POSITIVE, state)
    best_index = tf.where(forced, forcing_gt, best_index)

  in_crowd = tf.reduce_max(_masked_with_sentinel(tf.cast(anchor_ioa, tf.float32), crowd), axis=1)
  state = tf.where(tf.logical_and(tf.equal(state, NEGATIVE), in_crowd >= crowd_ioa), IGNORED,
                   state)
  state = tf.cast(state, tf.int32)
  matched = tf.where(tf.equal(state, POSITIVE), best_index, NO_MATCH_INDEX)
  return MatchResult(matched_gt_index=matched, match_state=state)
