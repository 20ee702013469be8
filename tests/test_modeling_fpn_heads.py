"""FPN and RetinaNet heads against a numpy reference and by their invariants."""
import math

import numpy as np
import pytest
import tensorflow as tf

from retinanet.modeling.fpn import FPN, upsample2x_nearest
from retinanet.modeling.heads import RetinaNetHead, prior_probability_bias


def np_conv(x, kernel, bias, stride=1):
  """Reference 2-D conv, NHWC, zero padding (k - 1) // 2 on every side."""
  k = kernel.shape[0]
  pad = (k - 1) // 2
  xp = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
  out_h = (x.shape[1] + 2 * pad - k) // stride + 1
  out_w = (x.shape[2] + 2 * pad - k) // stride + 1
  out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[3]))
  for y in range(out_h):
    for xx in range(out_w):
      patch = xp[:, y * stride:y * stride + k, xx * stride:xx * stride + k, :]
      out[:, y, xx, :] = np.einsum("bijc,ijcf->bf", patch, kernel)
  return out + bias


def np_up(x, like):
  up = x.repeat(2, axis=1).repeat(2, axis=2)
  return up[:, :like.shape[1], :like.shape[2]]


def fpn_reference(fpn, c, min_level, max_level, p6_source):
  w = lambda name: [v.numpy().astype(np.float64) for v in getattr(fpn, name).weights]
  top = min(5, max_level)
  merged = {top: np_conv(c[top], *w(f"lateral_p{top}"))}
  for level in range(top - 1, min_level - 1, -1):
    lateral = np_conv(c[level], *w(f"lateral_p{level}"))
    merged[level] = lateral + np_up(merged[level + 1], lateral)
  p = {level: np_conv(m, *w(f"output_p{level}")) for level, m in merged.items()}
  for level in range(6, max_level + 1):
    src = (c[5] if p6_source == "c5" else p[5]) if level == 6 else np.maximum(p[level - 1], 0)
    p[level] = np_conv(src, *w(f"coarse_p{level}"), stride=2)
  return p


@pytest.mark.parametrize("p6_source,sizes", [("c5", (8, 4, 2)), ("p5", (5, 3, 2))])
def test_fpn_matches_numpy_reference(p6_source, sizes):
  rng = np.random.default_rng(0)
  c = {level: rng.normal(size=(2, s, s + 1, ch)).astype(np.float32)
       for level, s, ch in zip((3, 4, 5), sizes, (6, 7, 9))}
  fpn = FPN(min_level=3, max_level=7, num_channels=5, p6_source=p6_source)
  fpn({k: tf.constant(v) for k, v in c.items()})  # builds the layers
  for layer_name in ("lateral_p3", "coarse_p6", "output_p5"):  # random biases too
    bias = getattr(fpn, layer_name).bias
    bias.assign(rng.normal(size=bias.shape))
  out = fpn({k: tf.constant(v) for k, v in c.items()})
  want = fpn_reference(fpn, {k: v.astype(np.float64) for k, v in c.items()}, 3, 7, p6_source)
  assert sorted(out) == [3, 4, 5, 6, 7]
  for level in range(3, 8):
    assert out[level].shape[-1] == 5
    np.testing.assert_allclose(out[level].numpy(), want[level], rtol=1e-4, atol=1e-4)
  # Sizes halve with ceil at every level, like the anchors.
  assert out[6].shape[1:3] == (math.ceil(sizes[2] / 2), math.ceil((sizes[2] + 1) / 2))
  in_channels = fpn.coarse_p6.kernel.shape[2]
  assert in_channels == (9 if p6_source == "c5" else 5)


def test_fpn_level_ranges_and_batch_norm():
  c = {3: tf.ones([1, 8, 8, 4]), 4: tf.ones([1, 4, 4, 4]), 5: tf.ones([1, 2, 2, 4])}
  fpn = FPN(min_level=4, max_level=8, num_channels=3, use_batch_norm=True, use_sync_bn=True)
  out = fpn(c, training=False)
  assert sorted(out) == [4, 5, 6, 7, 8]
  assert not hasattr(fpn, "lateral_p3")
  assert out[8].shape == (1, 1, 1, 3)
  names = {v.name for v in fpn.variables}
  assert {f"fpn/bn_p{l}/gamma:0" for l in range(4, 9)} <= names
  assert all(fpn_layer.synchronized for fpn_layer in (fpn.bn_p4, fpn.bn_p8))
  small = FPN(min_level=3, max_level=4, num_channels=3)
  assert sorted(small(c)) == [3, 4]
  with pytest.raises(ValueError, match="p6_source"):
    FPN(p6_source="c6")


def test_upsample2x_nearest_matches_numpy_and_crops():
  x = np.arange(2 * 3 * 2 * 1, dtype=np.float32).reshape(2, 3, 2, 1)
  like = tf.zeros([2, 5, 4, 7])
  got = upsample2x_nearest(tf.constant(x), like).numpy()
  np.testing.assert_array_equal(got, x.repeat(2, 1).repeat(2, 2)[:, :5, :4])


def make_head(**kwargs):
  args = dict(num_anchors=3, num_outputs_per_anchor=4, num_convs=2, num_channels=8,
              min_level=3, max_level=5)
  args.update(kwargs)
  return RetinaNetHead(**args)


def test_class_prior_bias_gives_prior_probability():
  p = 0.01
  bias = prior_probability_bias(p)
  assert 1.0 / (1.0 + math.exp(-bias)) == pytest.approx(p, rel=1e-12)
  head = make_head(num_outputs_per_anchor=5, prediction_bias=bias)
  features = {level: tf.zeros([1, 2, 2, 8]) for level in (3, 4, 5)}
  out = head(features)
  np.testing.assert_allclose(tf.sigmoid(head.prediction.bias).numpy(), p, rtol=1e-6)
  # Every layer draws its own initial kernel (same shapes, different values).
  assert not np.allclose(head.conv1.kernel.numpy(), head.conv2.kernel.numpy())
  for level in (3, 4, 5):  # zero features: every logit is the prior
    assert out[level].shape == (1, 2, 2, 15)
    np.testing.assert_allclose(tf.sigmoid(out[level]).numpy(), p, rtol=1e-5)
  with pytest.raises(ValueError, match="prior_probability"):
    prior_probability_bias(1.0)


def test_kernel_init_stddev():
  head = make_head(num_outputs_per_anchor=20, num_channels=64, num_convs=1)
  head({level: tf.zeros([1, 1, 1, 64]) for level in (3, 4, 5)})
  # 3*3*64*60 = 34,560 draws: the sample std is within 3% of 0.01 with overwhelming odds.
  assert np.std(head.prediction.kernel.numpy()) == pytest.approx(0.01, rel=0.03)
  assert np.std(head.conv1.kernel.numpy()) == pytest.approx(0.01, rel=0.03)
  np.testing.assert_array_equal(head.conv1.bias.numpy(), 0.0)


def test_head_weights_are_shared_across_levels():
  head = make_head()
  x = tf.random.stateless_normal([1, 4, 4, 8], seed=[1, 2])
  head({3: x, 4: x, 5: x})  # create the variables outside the tape
  with tf.GradientTape(persistent=True) as tape:
    out = head({3: x, 4: x, 5: x[:, :2, :2]})
    losses = {level: tf.reduce_sum(y ** 2) for level, y in out.items()}
  # One conv tower + one prediction conv: 2 * (num_convs + 1) variables, whatever the levels.
  assert len(head.trainable_variables) == 2 * (2 + 1)
  np.testing.assert_array_equal(out[3].numpy(), out[4].numpy())
  for level in (3, 5):
    grads = tape.gradient(losses[level], head.trainable_variables)
    assert all(g is not None and np.any(g.numpy() != 0) for g in grads)
  assert [v.name for v in head.variables] == ["head/conv1/kernel:0", "head/conv1/bias:0",
                                              "head/conv2/kernel:0", "head/conv2/bias:0",
                                              "head/prediction/kernel:0",
                                              "head/prediction/bias:0"]


def test_head_batch_norm_is_per_level_and_convs_shared():
  head = make_head(use_batch_norm=True, use_sync_bn=True, name="class_head")
  x = tf.random.stateless_normal([2, 4, 4, 8], seed=[5, 6])
  head({3: x, 4: x * 3.0 + 1.0, 5: x}, training=True)
  names = [v.name for v in head.variables]
  assert sum("/kernel" in n for n in names) == 3
  for i in (1, 2):
    for level in (3, 4, 5):
      assert f"class_head/bn{i}_p{level}/moving_mean:0" in names
      assert getattr(head, f"bn{i}_p{level}").synchronized
  # Levels saw different statistics, so their moving means differ.
  assert not np.allclose(head.bn1_p3.moving_mean.numpy(), head.bn1_p4.moving_mean.numpy())
  np.testing.assert_allclose(head.bn1_p3.moving_mean.numpy(), head.bn1_p5.moving_mean.numpy())


def test_head_rejects_missing_level():
  head = make_head()
  with pytest.raises(ValueError, match="no pyramid level 5"):
    head({3: tf.zeros([1, 2, 2, 8]), 4: tf.zeros([1, 1, 1, 8])})
