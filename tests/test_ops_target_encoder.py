"""Target encoder: hand-made anchors/boxes, round trip through the coder, tf.data."""
import numpy as np
import tensorflow as tf

from retinanet.ops import box_coder, box_ops, matcher, target_encoder

ANCHORS = np.array([[0, 0, 10, 10],     # = gt 0                      -> positive class 3
                    [0, 5, 10, 15],     # IoU 1/3 with gt 0           -> negative
                    [20, 20, 40, 40],   # = gt 1 (padding row)        -> negative
                    [50, 50, 60, 60],   # IoU 0.81 with gt 2 (crowd)  -> ignored
                    [0, 1, 10, 11],     # IoU 9/11 with gt 0          -> positive class 3
                    [0, 0, 10, 14]],    # IoU 10/14 with gt 0         -> positive
                   np.float32)
GT_BOXES = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 61, 61], [100, 100, 110, 110]],
                    np.float32)
GT_CLASSES = np.array([3, -1, 5, 1], np.int32)
GT_CROWD = np.array([False, False, True, False])


def test_hand_case():
  t = target_encoder.encode_targets(ANCHORS, GT_BOXES, GT_CLASSES, GT_CROWD, 0.5, 0.4)
  P, N, I = matcher.POSITIVE, matcher.NEGATIVE, matcher.IGNORED
  np.testing.assert_array_equal(t["match_state"], [P, N, N, I, P, P])
  np.testing.assert_array_equal(t["class_targets"], [3, 0, 0, 0, 3, 3])
  assert t["class_targets"].dtype == tf.int32 and t["box_targets"].dtype == tf.float32
  box_targets = t["box_targets"].numpy()
  np.testing.assert_array_equal(box_targets[[1, 2, 3]], np.zeros((3, 4)))
  np.testing.assert_allclose(box_targets[0], np.zeros(4), atol=1e-6)
  # Round trip: positives decode back to their ground-truth box.
  decoded = box_coder.decode(box_targets, ANCHORS).numpy()
  np.testing.assert_allclose(decoded[[0, 4, 5]], GT_BOXES[[0, 0, 0]], atol=1e-4)


def test_crowd_ignore_by_intersection_over_anchor_area_hand_case():
  # One large crowd region [0, 0, 400, 400] and one person box far away.
  gt = np.array([[0, 0, 400, 400], [500, 500, 540, 540]], np.float32)
  classes = np.array([0, 0], np.int32)
  crowd = np.array([True, False])
  anchors = np.array([
      [100, 100, 110, 110],   # 10x10 inside the crowd: IoU 100/160000, IoA 1   -> ignored
      [390, 390, 410, 410],   # 20x20 straddling a corner: IoA 100/400 = 0.25  -> negative
      [0, 380, 10, 410],      # 10x30, 20 of 30 columns inside: IoA 0.667     -> negative
      [0, 393, 10, 403],      # 10x10, 7 of 10 columns inside: IoA 0.7        -> ignored
      [500, 500, 540, 540],   # = the normal box                              -> positive
      [600, 600, 610, 610]],  # nowhere                                       -> negative
      np.float32)
  iou = box_ops.pairwise_iou_yxyx(anchors, gt).numpy()
  assert iou[0, 0] < 0.001 and iou[3, 0] < 0.001  # the IoU rule would train them as background
  t = target_encoder.encode_targets(anchors, gt, classes, crowd, 0.5, 0.4, crowd_ioa=0.7)
  P, N, I = matcher.POSITIVE, matcher.NEGATIVE, matcher.IGNORED
  np.testing.assert_array_equal(t["match_state"], [I, N, N, I, P, N])
  np.testing.assert_allclose(box_ops.pairwise_ioa_yxyx(anchors, gt).numpy()[:4, 0],
                             [1.0, 0.25, 20 / 30, 0.7], rtol=1e-6)


def test_no_boxes_and_all_padding():
  for boxes, classes in [(np.zeros((0, 4), np.float32), np.zeros(0, np.int32)),
                         (np.zeros((3, 4), np.float32), np.full(3, -1, np.int32))]:
    crowd = np.zeros(len(classes), bool)
    t = target_encoder.encode_targets(ANCHORS, boxes, classes, crowd, 0.5, 0.4)
    np.testing.assert_array_equal(t["match_state"], [matcher.NEGATIVE] * len(ANCHORS))
    np.testing.assert_array_equal(t["class_targets"], np.zeros(len(ANCHORS)))
    np.testing.assert_array_equal(t["box_targets"], np.zeros((len(ANCHORS), 4)))


def test_random_boxes_round_trip_and_iou_rule():
  rng = np.random.RandomState(0)
  from retinanet.ops import anchors as anchors_lib
  anchors = anchors_lib.generate_anchors((64, 64), 3, 4, 4.0, 2, (0.5, 1.0, 2.0))
  c = rng.uniform(0, 64, (6, 2))
  s = rng.uniform(8, 60, (6, 2))
  gt = np.concatenate([c - s / 2, c + s / 2], 1).astype(np.float32)
  classes = np.array([0, 1, 2, 3, -1, -1], np.int32)
  t = target_encoder.encode_targets(anchors, gt, classes, np.zeros(6, bool), 0.5, 0.4)
  iou = box_ops.pairwise_iou_yxyx(anchors, gt[:4]).numpy()
  best = iou.max(1)
  state = t["match_state"].numpy()
  np.testing.assert_array_equal(state == matcher.POSITIVE, best >= 0.5)
  np.testing.assert_array_equal(state == matcher.NEGATIVE, best < 0.4)
  pos = state == matcher.POSITIVE
  assert pos.sum() > 0
  np.testing.assert_array_equal(t["class_targets"].numpy()[pos], classes[iou.argmax(1)][pos])
  decoded = box_coder.decode(t["box_targets"], anchors).numpy()
  np.testing.assert_allclose(decoded[pos], gt[iou.argmax(1)][pos], atol=1e-3)


def test_runs_inside_tf_data_with_static_shapes():
  def encode(boxes, classes, crowd):
    return target_encoder.encode_targets(tf.constant(ANCHORS), boxes, classes, crowd, 0.5, 0.4)
  ds = tf.data.Dataset.from_tensors((GT_BOXES, GT_CLASSES, GT_CROWD)).map(encode)
  spec = ds.element_spec
  assert spec["box_targets"].shape == (6, 4) and spec["match_state"].shape == (6,)
  got = next(iter(ds))
  eager = target_encoder.encode_targets(ANCHORS, GT_BOXES, GT_CLASSES, GT_CROWD, 0.5, 0.4)
  for key in eager:
    np.testing.assert_array_equal(got[key], eager[key])
