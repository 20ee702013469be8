"""Box ops: formats, area, pairwise IoU against a per-pair loop, clip, flip."""
import numpy as np
import pytest
import tensorflow as tf

from retinanet.ops import box_ops


def _random_yxyx(rng, n, size=100.0):
  y = rng.uniform(0, size, (n, 2))
  x = rng.uniform(0, size, (n, 2))
  return np.stack([y.min(1), x.min(1), y.max(1), x.max(1)], axis=1)


def _iou_loop(a, b):
  out = np.zeros((len(a), len(b)))
  for i, p in enumerate(a):
    for j, q in enumerate(b):
      ih = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
      iw = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
      inter = ih * iw
      union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
      out[i, j] = inter / union if union > 0 else 0.0
  return out


def test_box_convert_hand_case():
  yxyx = tf.constant([[10.0, 20.0, 50.0, 80.0]])
  np.testing.assert_allclose(box_ops.box_convert(yxyx, "yxyx", "xyxy"), [[20, 10, 80, 50]])
  np.testing.assert_allclose(box_ops.box_convert(yxyx, "yxyx", "xywh"), [[20, 10, 60, 40]])
  np.testing.assert_allclose(box_ops.box_convert(yxyx, "yxyx", "cycxhw"), [[30, 50, 40, 60]])
  np.testing.assert_allclose(box_ops.yxyx_to_xywh(yxyx), [[20, 10, 60, 40]])
  np.testing.assert_allclose(box_ops.box_convert([[20.0, 10.0, 60.0, 40.0]], "xywh", "yxyx"), yxyx)
  np.testing.assert_allclose(box_ops.xyxy_to_yxyx([[20.0, 10.0, 80.0, 50.0]]), yxyx)
  np.testing.assert_allclose(box_ops.cycxhw_to_yxyx([[30.0, 50.0, 40.0, 60.0]]), yxyx)


@pytest.mark.parametrize("fmt", box_ops.BOX_FORMATS)
def test_box_convert_round_trip(fmt):
  boxes = _random_yxyx(np.random.RandomState(0), 20)
  there = box_ops.box_convert(boxes, "yxyx", fmt)
  back = box_ops.box_convert(there, fmt, "yxyx")
  np.testing.assert_allclose(back, boxes, atol=1e-9)


def test_box_convert_unknown_format_raises():
  with pytest.raises(ValueError, match="xcycwh"):
    box_ops.box_convert(tf.zeros([1, 4]), "yxyx", "xcycwh")
  with pytest.raises(ValueError, match="in_fmt"):
    box_ops.box_convert(tf.zeros([1, 4]), "ltrb", "yxyx")


def test_area_clamps_inverted_boxes():
  boxes = tf.constant([[0.0, 0.0, 10.0, 5.0], [5.0, 5.0, 4.0, 9.0]])
  np.testing.assert_allclose(box_ops.box_area_yxyx(boxes), [50.0, 0.0])


def test_iou_hand_case():
  a = tf.constant([[0.0, 0.0, 10.0, 10.0]])
  b = tf.constant([[0.0, 5.0, 10.0, 15.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 5.0, 5.0]])
  np.testing.assert_allclose(box_ops.pairwise_iou_yxyx(a, b), [[50 / 150, 0.0, 0.25]], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_iou_matches_per_pair_loop(dtype):
  rng = np.random.RandomState(1)
  a = _random_yxyx(rng, 7).astype(dtype)
  b = _random_yxyx(rng, 5).astype(dtype)
  # Some exact duplicates and disjoint boxes.
  b[0] = a[3]
  b[1] = [200, 200, 210, 210]
  got = box_ops.pairwise_iou_yxyx(tf.constant(a), tf.constant(b))
  assert got.dtype == tf.as_dtype(dtype)
  assert got.shape == (7, 5)
  np.testing.assert_allclose(got.numpy(), _iou_loop(a, b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_iou_with_itself_is_one(dtype):
  a = _random_yxyx(np.random.RandomState(2), 9).astype(dtype)
  iou = box_ops.pairwise_iou_yxyx(a, a).numpy()
  np.testing.assert_allclose(np.diag(iou), np.ones(9), rtol=1e-6)
  assert np.all(iou <= 1.0 + 1e-6) and np.all(iou >= 0.0)


def test_iou_empty_inputs_and_zero_area():
  a = tf.constant(_random_yxyx(np.random.RandomState(3), 3), tf.float32)
  assert box_ops.pairwise_iou_yxyx(tf.zeros([0, 4]), a).shape == (0, 3)
  assert box_ops.pairwise_iou_yxyx(a, tf.zeros([0, 4])).shape == (3, 0)
  zero = tf.zeros([2, 4])
  np.testing.assert_array_equal(box_ops.pairwise_iou_yxyx(zero, zero), np.zeros((2, 2)))


def test_ioa_hand_case():
  anchors = tf.constant([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 25.0], [3.0, 3.0, 3.0, 9.0]])
  crowd = tf.constant([[0.0, 0.0, 100.0, 100.0], [0.0, 0.0, 10.0, 10.0]])
  got = box_ops.pairwise_ioa_yxyx(anchors, crowd).numpy()
  # Row 1: area 200, inside [0, 10]^2 a 5 x 5 part; row 2 has zero area -> 0.
  np.testing.assert_allclose(got, [[1.0, 1.0], [1.0, 25 / 200], [0.0, 0.0]])


def test_generalized_iou_hand_case():
  a = tf.constant([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
  b = tf.constant([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [2.0, 2.0, 3.0, 3.0]])
  got = box_ops.generalized_iou_yxyx(a, b).numpy()
  # 1: IoU 1/7, enclosing 9, union 7 -> 1/7 - 2/9 = -5/63. 2: identical -> 1.
  # 3: disjoint, union 2, enclosing 9 -> 0 - 7/9.
  np.testing.assert_allclose(got, [-5 / 63, 1.0, -7 / 9], rtol=1e-6)
  # Symmetric, and degenerate pairs give 0 rather than NaN.
  np.testing.assert_allclose(box_ops.generalized_iou_yxyx(b, a), got, rtol=1e-6)
  assert box_ops.generalized_iou_yxyx(tf.zeros([4]), tf.zeros([4])).numpy() == 0.0


def test_generalized_iou_gradient_hand_case():
  # Box a = [0, 0, h, 2] against [1, 1, 3, 3] for 1 < h < 3: IoU = (h - 1) / (h + 5),
  # (C - U) / C = (4 - h) / 9, so dGIoU/dh = 6 / (h + 5)**2 + 1 / 9 = 103 / 441 at h = 2.
  a = tf.Variable([0.0, 0.0, 2.0, 2.0])
  with tf.GradientTape() as tape:
    giou = box_ops.generalized_iou_yxyx(a, tf.constant([1.0, 1.0, 3.0, 3.0]))
  grad = tape.gradient(giou, a).numpy()
  assert grad[2] == pytest.approx(103 / 441, rel=1e-6)
  assert grad[3] == pytest.approx(103 / 441, rel=1e-6)  # the same geometry transposed
  eps = 1e-3
  for k in range(4):
    up, down = a.numpy().copy(), a.numpy().copy()
    up[k] += eps
    down[k] -= eps
    f = lambda v: box_ops.generalized_iou_yxyx(tf.constant(v), tf.constant(  # noqa: E731
        [1.0, 1.0, 3.0, 3.0])).numpy()
    assert grad[k] == pytest.approx((f(up) - f(down)) / (2 * eps), abs=1e-3)


def test_clip_boxes():
  boxes = tf.constant([[-5.0, 3.0, 50.0, 120.0], [10.0, -1.0, 20.0, 30.0]])
  np.testing.assert_allclose(box_ops.clip_boxes_yxyx(boxes, (40, 100)),
                             [[0, 3, 40, 100], [10, 0, 20, 30]])
  # Per-image sizes [B, 1, 2] against [B, N, 4].
  batched = tf.stack([boxes, boxes])
  sizes = tf.constant([[[40, 100]], [[15, 25]]])
  got = box_ops.clip_boxes_yxyx(batched, sizes).numpy()
  np.testing.assert_allclose(got[1], [[0, 3, 15, 25], [10, 0, 15, 25]])


def test_normalize_denormalize():
  boxes = tf.constant([[10.0, 20.0, 30.0, 80.0]])
  norm = box_ops.normalize_boxes_yxyx(boxes, (40, 100))
  np.testing.assert_allclose(norm, [[0.25, 0.2, 0.75, 0.8]], rtol=1e-6)
  np.testing.assert_allclose(box_ops.denormalize_boxes_yxyx(norm, (40, 100)), boxes, rtol=1e-6)


def test_flip_left_right():
  boxes = tf.constant([[10.0, 20.0, 30.0, 80.0]])
  flipped = box_ops.flip_boxes_left_right_yxyx(boxes, 100)
  np.testing.assert_allclose(flipped, [[10, 20, 30, 80]])  # symmetric about x = 50
  boxes = tf.constant([[0.1, 0.0, 0.2, 0.3]])
  flipped = box_ops.flip_boxes_left_right_yxyx(boxes, 1.0)
  np.testing.assert_allclose(flipped, [[0.1, 0.7, 0.2, 1.0]], rtol=1e-6)
  np.testing.assert_allclose(box_ops.flip_boxes_left_right_yxyx(flipped, 1.0), boxes, rtol=1e-6)


def test_elementwise_iou_is_the_diagonal_of_pairwise_iou():
  rng = np.random.RandomState(3)
  corners = np.sort(rng.uniform(0, 20, (9, 2, 2)), axis=1)
  a = corners.transpose(0, 2, 1).reshape(9, 4)[:, [0, 2, 1, 3]]
  b = np.roll(a, 1, axis=0)
  b[0] = a[0]  # one identical pair (IoU 1)
  b[1] = [5, 5, 5, 5]  # a zero-area box
  expected = np.diag(box_ops.pairwise_iou_yxyx(a, b).numpy())
  np.testing.assert_allclose(box_ops.elementwise_iou_yxyx(a, b).numpy(), expected, rtol=1e-6)
  assert box_ops.elementwise_iou_yxyx(a, b).numpy()[0] == pytest.approx(1.0)
