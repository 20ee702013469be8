"""Box coder: hand case, decode(encode(b, a), a) == b, clamp."""
import math

import numpy as np
import pytest
import tensorflow as tf

from retinanet.ops import box_coder


def test_encode_hand_case():
  anchor = tf.constant([[0.0, 0.0, 10.0, 10.0]])
  box = tf.constant([[1.0, 2.0, 21.0, 12.0]])  # centre (11, 7), size 20 x 10
  got = box_coder.encode(box, anchor, (0.1, 0.1, 0.2, 0.2)).numpy()
  np.testing.assert_allclose(got, [[6.0, 2.0, math.log(2.0) / 0.2, 0.0]], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(box_coder.decode(got, anchor, (0.1, 0.1, 0.2, 0.2)), box, rtol=1e-5)
  # The default is the unscaled convention (Model Garden, detectron2, torchvision).
  assert box_coder.DEFAULT_VARIANCES == (1.0, 1.0, 1.0, 1.0)
  got = box_coder.encode(box, anchor).numpy()
  np.testing.assert_allclose(got, [[0.6, 0.2, math.log(2.0), 0.0]], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(box_coder.decode(got, anchor), box, rtol=1e-5)


@pytest.mark.parametrize("variances", [(0.1, 0.1, 0.2, 0.2), (1.0, 1.0, 1.0, 1.0)])
def test_decode_encode_round_trip(variances):
  rng = np.random.RandomState(0)
  n = 500
  def boxes(low, high):
    c = rng.uniform(0, 640, (n, 2))
    s = rng.uniform(low, high, (n, 2))
    return np.concatenate([c - s / 2, c + s / 2], axis=1).astype(np.float32)
  # Size ratios stay within [1/50, 50], inside the decode clamp of 1000 / 16.
  b, a = boxes(2, 400), boxes(8, 100)
  deltas = box_coder.encode(b, a, variances)
  assert deltas.dtype == tf.float32
  np.testing.assert_allclose(box_coder.decode(deltas, a, variances), b, rtol=1e-4, atol=1e-2)


def test_decode_broadcasts_anchors_and_casts():
  a = tf.constant([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 25.0, 45.0]])
  deltas = tf.zeros([3, 2, 4], tf.float16)
  got = box_coder.decode(deltas, a[None])
  assert got.dtype == tf.float32 and got.shape == (3, 2, 4)
  np.testing.assert_allclose(got[2], a)


def test_decode_clamps_huge_deltas():
  a = tf.constant([[0.0, 0.0, 16.0, 16.0]])
  got = box_coder.decode(tf.constant([[0.0, 0.0, 1e4, 1e4]]), a).numpy()
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got[0, 2] - got[0, 0], 1000.0, rtol=1e-4)


def test_bad_variances_raise():
  with pytest.raises(ValueError, match="variances"):
    box_coder.encode(tf.zeros([1, 4]), tf.ones([1, 4]), (0.1, 0.1, 0.2))
