"""Matcher on hand-made IoU matrices: thresholds, ignore band, crowd, padding, low quality."""
import numpy as np
import pytest
import tensorflow as tf

from retinanet.ops import matcher
from retinanet.ops.matcher import IGNORED, NEGATIVE, POSITIVE


def _match(iou, valid=None, crowd=None, low_quality=False, pos=0.5, neg=0.4, ioa=None,
           crowd_ioa=0.7, rule="all_ties"):
  """ioa (intersection / anchor area) defaults to the IoU matrix: only crowd columns read it."""
  iou = np.asarray(iou, np.float32).reshape(len(iou), -1)
  ioa = iou if ioa is None else np.asarray(ioa, np.float32).reshape(iou.shape)
  m = iou.shape[1]
  valid = np.ones(m, bool) if valid is None else np.asarray(valid)
  crowd = np.zeros(m, bool) if crowd is None else np.asarray(crowd)
  r = matcher.match(tf.constant(iou), tf.constant(ioa), valid, crowd, pos, neg, low_quality,
                    crowd_ioa, rule)
  return r.matched_gt_index.numpy(), r.match_state.numpy()


def test_thresholds_and_ignore_band():
  iou = [[0.7, 0.1],   # positive -> 0
         [0.5, 0.55],  # positive -> 1 (the best)
         [0.45, 0.1],  # ignore band
         [0.4, 0.0],   # exactly negative_iou: ignored
         [0.39, 0.2],  # negative
         [0.0, 0.0]]   # negative
  index, state = _match(iou)
  np.testing.assert_array_equal(state, [POSITIVE, POSITIVE, IGNORED, IGNORED, NEGATIVE, NEGATIVE])
  np.testing.assert_array_equal(index, [0, 1] + [matcher.NO_MATCH_INDEX] * 4)
  assert index.dtype == np.int32 and state.dtype == np.int32


def test_ties_go_to_lowest_index():
  index, state = _match([[0.6, 0.6]])
  assert state[0] == POSITIVE and index[0] == 0


def test_padding_rows_never_match():
  iou = [[0.9, 0.6], [0.9, 0.1]]
  index, state = _match(iou, valid=[False, True])
  np.testing.assert_array_equal(state, [POSITIVE, NEGATIVE])
  np.testing.assert_array_equal(index, [1, matcher.NO_MATCH_INDEX])


def test_no_boxes_gives_all_negative():
  index, state = _match(np.zeros((5, 0)))
  np.testing.assert_array_equal(state, [NEGATIVE] * 5)
  np.testing.assert_array_equal(index, [matcher.NO_MATCH_INDEX] * 5)
  index, state = _match(np.full((3, 2), 0.9), valid=[False, False])
  np.testing.assert_array_equal(state, [NEGATIVE] * 3)


def test_crowd_boxes_ignore_by_intersection_over_anchor_area():
  # Columns: 0 normal, 1 crowd. The crowd rule reads IoA, never IoU.
  iou = [[0.1, 0.9],    # high IoU but IoA below 0.7 -> negative (a crowd is never matched)
         [0.1, 0.01],   # tiny IoU, anchor fully inside the crowd -> ignored
         [0.1, 0.02],   # IoA exactly 0.7 -> ignored
         [0.1, 0.02],   # IoA 0.69 -> negative
         [0.6, 0.5],    # positive for the normal box keeps priority over the crowd
         [0.45, 0.0]]   # ignore band stays ignored
  ioa = [[0.0, 0.6], [0.0, 1.0], [0.0, 0.7], [0.0, 0.69], [0.0, 1.0], [0.0, 0.0]]
  index, state = _match(iou, ioa=ioa, crowd=[False, True])
  np.testing.assert_array_equal(state, [NEGATIVE, IGNORED, IGNORED, NEGATIVE, POSITIVE, IGNORED])
  assert index[4] == 0
  # IoA of a normal (not crowd) column never makes an anchor ignored.
  _, state = _match([[0.01, 0.0]], ioa=[[1.0, 0.0]], crowd=[False, True])
  np.testing.assert_array_equal(state, [NEGATIVE])
  # The threshold is a parameter; an image with only crowd boxes has no positives.
  _, state = _match([[0.9], [0.0]], ioa=[[0.5], [0.0]], crowd=[True], crowd_ioa=0.5)
  np.testing.assert_array_equal(state, [IGNORED, NEGATIVE])


def test_padded_crowd_row_is_ignored_entirely():
  _, state = _match([[0.9], [0.5]], ioa=[[1.0], [1.0]], valid=[False], crowd=[True])
  np.testing.assert_array_equal(state, [NEGATIVE, NEGATIVE])


def test_low_quality_matches():
  iou = [[0.3, 0.0],
         [0.3, 0.1],   # ties with row 0 as box 0's best: both become positive
         [0.1, 0.35],  # box 1's best anchor
         [0.2, 0.2],
         [0.0, 0.0]]
  _, state = _match(iou)
  np.testing.assert_array_equal(state, [NEGATIVE] * 5)
  index, state = _match(iou, low_quality=True)
  np.testing.assert_array_equal(state, [POSITIVE, POSITIVE, POSITIVE, NEGATIVE, NEGATIVE])
  np.testing.assert_array_equal(index, [0, 0, 1, 0, 0])


def test_low_quality_skips_boxes_without_overlap_padding_and_crowd():
  iou = [[0.0, 0.2, 0.3], [0.0, 0.1, 0.1]]
  # Box 0 overlaps nothing, box 1 is padding, box 2 is crowd: no low-quality positives.
  _, state = _match(iou, valid=[True, False, True], crowd=[False, False, True], low_quality=True)
  np.testing.assert_array_equal(state, [NEGATIVE, NEGATIVE])


def test_first_argmax_rule_takes_one_anchor_per_box():
  iou = [[0.3, 0.0],
         [0.3, 0.1],   # ties with row 0 for box 0: only the first (row 0) becomes positive
         [0.1, 0.35],  # box 1's best anchor
         [0.2, 0.2],
         [0.0, 0.0]]
  index, state = _match(iou, low_quality=True, rule="first_argmax")
  np.testing.assert_array_equal(state, [POSITIVE, NEGATIVE, POSITIVE, NEGATIVE, NEGATIVE])
  np.testing.assert_array_equal(index, [0, 0, 1, 0, 0])


def test_first_argmax_matches_the_forcing_box_not_the_anchors_best():
  # Row 0 is the best anchor of both boxes; its own best box is 1 (0.45, below 0.5).
  iou = [[0.3, 0.45],
         [0.1, 0.2]]
  index, state = _match(iou, low_quality=True, rule="first_argmax")
  np.testing.assert_array_equal(state, [POSITIVE, NEGATIVE])
  assert index[0] == 0  # the lowest forcing box (Model Garden), not the anchor's best
  index, state = _match(iou, low_quality=True, rule="all_ties")
  np.testing.assert_array_equal(state, [POSITIVE, NEGATIVE])
  assert index[0] == 1  # Detectron2: the anchor's own best box


def _modelgarden_force_match(iou, pos, neg):
  """numpy transcription of Model Garden's BoxMatcher(thresholds=[neg, pos],
  indicators=[NEGATIVE, IGNORED, POSITIVE], force_match_for_each_col=True), restricted
  to boxes with some overlap (ours keeps zero-overlap boxes out)."""
  best, index = iou.max(axis=1), iou.argmax(axis=1)
  state = np.where(best >= pos, POSITIVE, np.where(best < neg, NEGATIVE, IGNORED))
  forced = {}
  for j in range(iou.shape[1]):
    if iou[:, j].max() > 0:
      forced.setdefault(int(iou[:, j].argmax()), j)  # the first box that forces row i
  for i, j in forced.items():
    state[i], index[i] = POSITIVE, j
  index = np.where(state == POSITIVE, index, matcher.NO_MATCH_INDEX)
  return index, state


@pytest.mark.parametrize("seed", range(5))
def test_first_argmax_equals_modelgarden_force_match_on_tied_matrices(seed):
  rng = np.random.default_rng(seed)
  # IoUs on a coarse grid: many ties within and across columns, some zero columns.
  iou = rng.integers(0, 8, size=(60, 7)) / 10.0
  iou[:, rng.integers(0, 7)] = 0.0
  expected_index, expected_state = _modelgarden_force_match(iou, 0.5, 0.4)
  index, state = _match(iou, low_quality=True, rule="first_argmax")
  np.testing.assert_array_equal(state, expected_state)
  np.testing.assert_array_equal(index, expected_index)


def test_unknown_low_quality_rule_raises():
  with pytest.raises(ValueError, match="low_quality_rule"):
    _match([[0.5]], low_quality=True, rule="best")


def test_bad_thresholds_raise():
  with pytest.raises(ValueError, match="negative_iou"):
    _match([[0.5]], pos=0.4, neg=0.5)
