"""Losses: focal vs numpy formula and BCE properties, Huber, retinanet_loss, normalizer."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from retinanet import losses
from retinanet.ops import box_coder
from retinanet.ops.matcher import IGNORED, NEGATIVE, POSITIVE


def _np_sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _np_focal(logits, targets, alpha, gamma):
  p = _np_sigmoid(logits.astype(np.float64))
  p_t = np.where(targets == 1, p, 1 - p)
  a_t = np.where(targets == 1, alpha, 1 - alpha)
  return -a_t * (1 - p_t) ** gamma * np.log(p_t)


def _data(seed=0, shape=(4, 6, 3)):
  rng = np.random.RandomState(seed)
  logits = rng.uniform(-6, 6, shape).astype(np.float32)
  targets = (rng.uniform(size=shape) < 0.3).astype(np.float32)
  return logits, targets


def test_focal_matches_numpy_formula():
  logits, targets = _data()
  got = losses.sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0).numpy()
  np.testing.assert_allclose(got, _np_focal(logits, targets, 0.25, 2.0), rtol=1e-4, atol=1e-7)


def test_focal_is_at_most_bce_and_reduces_to_it():
  logits, targets = _data(1)
  bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits).numpy()
  focal = losses.sigmoid_focal_loss(logits, targets, alpha=None, gamma=2.0).numpy()
  assert np.all(focal <= bce + 1e-7)
  assert np.any(focal < 0.5 * bce)
  np.testing.assert_allclose(losses.sigmoid_focal_loss(logits, targets, None, 0.0), bce, rtol=1e-6)
  np.testing.assert_allclose(losses.sigmoid_focal_loss(logits, targets, 0.5, 0.0), 0.5 * bce,
                             rtol=1e-6)


def test_focal_casts_half_precision_logits():
  logits, targets = _data(2)
  got = losses.sigmoid_focal_loss(tf.constant(logits, tf.float16), targets)
  assert got.dtype == tf.float32


def test_huber_matches_keras():
  rng = np.random.RandomState(3)
  pred = rng.normal(0, 0.3, (5, 4)).astype(np.float32)
  true = rng.normal(0, 0.3, (5, 4)).astype(np.float32)
  ours = losses.huber_loss(pred, true, 0.1).numpy()
  keras = tf_keras.losses.Huber(delta=0.1, reduction="none")(true, pred).numpy()
  np.testing.assert_allclose(ours.mean(-1), keras, rtol=1e-5)
  np.testing.assert_allclose(losses.huber_loss([0.05], [0.0], 0.1), [0.5 * 0.05 ** 2], rtol=1e-6)
  np.testing.assert_allclose(losses.huber_loss([1.0], [0.0], 0.1), [0.1 * (1.0 - 0.05)],
                             rtol=1e-6)


def _batch(seed=0, b=2, n=7, c=3):
  rng = np.random.RandomState(seed)
  logits = rng.normal(0, 2, (b, n, c)).astype(np.float32)
  boxes = rng.normal(0, 0.5, (b, n, 4)).astype(np.float32)
  state = rng.choice([POSITIVE, NEGATIVE, IGNORED], (b, n)).astype(np.int32)
  state[0, 0] = POSITIVE
  classes = np.where(state == POSITIVE, rng.randint(0, c, (b, n)), 0).astype(np.int32)
  box_targets = np.where(state[..., None] == POSITIVE, rng.normal(0, 0.5, (b, n, 4)),
                         0).astype(np.float32)
  return logits, boxes, classes, box_targets, state


def _np_retinanet_loss(logits, boxes, classes, box_targets, state, alpha, gamma, delta, weight):
  c = logits.shape[-1]
  pos = state == POSITIVE
  one_hot = np.eye(c)[classes] * pos[..., None]
  focal = _np_focal(logits, one_hot, alpha, gamma) * (state != IGNORED)[..., None]
  x = np.abs(boxes.astype(np.float64) - box_targets)
  huber = np.where(x <= delta, 0.5 * x ** 2, delta * x - 0.5 * delta ** 2).mean(-1) * pos
  norm = max(pos.sum(), 1)
  cls, box = focal.sum() / norm, huber.sum() / norm
  return cls, box, cls + weight * box


def test_retinanet_loss_matches_numpy():
  data = _batch()
  got = losses.retinanet_loss(*data, alpha=0.25, gamma=2.0, delta=0.1, box_loss_weight=50.0)
  cls, box, total = _np_retinanet_loss(*data, 0.25, 2.0, 0.1, 50.0)
  np.testing.assert_allclose(got["class_loss"], cls, rtol=1e-5)
  np.testing.assert_allclose(got["box_loss"], box, rtol=1e-5)
  np.testing.assert_allclose(got["total_loss"], total, rtol=1e-5)
  assert got["num_positives"].numpy() == (data[4] == POSITIVE).sum()


def _np_giou(a, b):
  """GIoU of yxyx rows, float64 numpy (the formula of Rezatofighi et al. 2019)."""
  ih = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0)
  iw = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0)
  area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
  inter = ih * iw
  union = area(a) + area(b) - inter
  enclosing = ((np.maximum(a[..., 2], b[..., 2]) - np.minimum(a[..., 0], b[..., 0])) *
               (np.maximum(a[..., 3], b[..., 3]) - np.minimum(a[..., 1], b[..., 1])))
  return inter / union - (enclosing - union) / enclosing


def _np_decode(deltas, anchors):
  """Unscaled Faster R-CNN decoding of [..., 4] deltas against [N, 4] yxyx anchors."""
  h, w = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
  cy, cx = anchors[:, 0] + h / 2, anchors[:, 1] + w / 2
  ncy, ncx = cy + deltas[..., 0] * h, cx + deltas[..., 1] * w
  nh, nw = h * np.exp(deltas[..., 2]), w * np.exp(deltas[..., 3])
  return np.stack([ncy - nh / 2, ncx - nw / 2, ncy + nh / 2, ncx + nw / 2], -1)


def test_giou_box_loss_matches_numpy_on_decoded_boxes():
  logits, boxes, classes, box_targets, state = _batch(4)
  rng = np.random.RandomState(4)
  corner = rng.uniform(0, 200, (boxes.shape[1], 2))
  size = rng.uniform(8, 120, (boxes.shape[1], 2))
  anchors = np.concatenate([corner, corner + size], 1).astype(np.float32)
  got = losses.retinanet_loss(logits, boxes, classes, box_targets, state, box_loss="giou",
                              anchors=anchors, box_loss_weight=1.0)
  pos = state == POSITIVE
  per_anchor = 1.0 - _np_giou(_np_decode(boxes.astype(np.float64), anchors),
                              _np_decode(box_targets.astype(np.float64), anchors))
  want_box = (per_anchor * pos).sum() / max(pos.sum(), 1)
  np.testing.assert_allclose(got["box_loss"], want_box, rtol=1e-5)
  cls, _, _ = _np_retinanet_loss(logits, boxes, classes, box_targets, state, 0.25, 2.0, 0.1, 1.0)
  np.testing.assert_allclose(got["total_loss"], cls + want_box, rtol=1e-5)
  # A perfect prediction has zero box loss; the loss needs the anchors.
  perfect = losses.retinanet_loss(logits, box_targets, classes, box_targets, state,
                                  box_loss="giou", anchors=anchors)
  assert perfect["box_loss"].numpy() == pytest.approx(0.0, abs=1e-6)
  with pytest.raises(ValueError, match="needs the anchors"):
    losses.retinanet_loss(logits, boxes, classes, box_targets, state, box_loss="giou")


def test_giou_loss_gradient_hand_case():
  # Anchor [0, 0, 2, 2], target box [1, 1, 3, 3]; deltas 0 decode to the anchor itself.
  # dh scales the height about the centre: d ymax/d dh = +1, d ymin/d dh = -1 (h / 2).
  # For box [y0, 0, y1, 2] against the target: dGIoU/dy1 = 103/441 (test_ops_box_ops);
  # dGIoU/dy0 at y0 = 0: U = 7 - 2 y0, C = 3 (3 - y0), I = 1, so
  # dIoU/dy0 = 2/49 and d[(C - U)/C]/dy0 = -1/27, giving 2/49 + 1/27 = 103/1323.
  # d(1 - GIoU)/d dh = -(103/441 - 103/1323) = -206/1323.
  anchors = tf.constant([[0.0, 0.0, 2.0, 2.0]])
  target = box_coder.encode(tf.constant([[1.0, 1.0, 3.0, 3.0]]), anchors)
  deltas = tf.Variable(tf.zeros([1, 4]))
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(losses.giou_loss(deltas, target, anchors))
  grad = tape.gradient(loss, deltas).numpy()[0]
  assert loss.numpy() == pytest.approx(1 + 5 / 63, rel=1e-6)
  assert grad[2] == pytest.approx(-206 / 1323, rel=1e-5)
  assert grad[3] == pytest.approx(-206 / 1323, rel=1e-5)  # the same geometry transposed
  eps = 1e-3
  for k in range(4):  # and every coordinate against central differences
    up, down = np.zeros([1, 4], np.float32), np.zeros([1, 4], np.float32)
    up[0, k], down[0, k] = eps, -eps
    f = lambda d: float(tf.reduce_sum(losses.giou_loss(tf.constant(d), target, anchors)))  # noqa
    assert grad[k] == pytest.approx((f(up) - f(down)) / (2 * eps), abs=2e-3)


def test_ignored_anchors_contribute_nothing():
  logits, boxes, classes, box_targets, state = _batch(1)
  base = losses.retinanet_loss(logits, boxes, classes, box_targets, state)
  ignored = state == IGNORED
  assert ignored.any()
  logits2, boxes2 = logits.copy(), boxes.copy()
  logits2[ignored] += 10.0
  boxes2[ignored] += 3.0
  moved = losses.retinanet_loss(logits2, boxes2, classes, box_targets, state)
  np.testing.assert_allclose(moved["total_loss"], base["total_loss"], rtol=1e-6)


def test_zero_positives_is_finite():
  logits, boxes, classes, box_targets, state = _batch(2)
  state = np.where(state == POSITIVE, NEGATIVE, state).astype(np.int32)
  got = losses.retinanet_loss(logits, boxes, np.zeros_like(classes), np.zeros_like(box_targets),
                              state)
  for v in got.values():
    assert np.isfinite(v.numpy())
  assert got["box_loss"].numpy() == 0.0 and got["class_loss"].numpy() > 0.0
  # The class loss is then the plain sum of background focal terms (normalizer 1).
  expected = (_np_focal(logits, np.zeros_like(logits), 0.25, 2.0) * (state != IGNORED)[..., None])
  np.testing.assert_allclose(got["class_loss"], expected.sum(), rtol=1e-5)


def test_external_normalizer_and_replica_sum():
  data = _batch(3, b=4)
  whole = losses.retinanet_loss(*data)
  global_pos = whole["num_positives"]
  # Two "replicas" of 2 images each, normalized by the global positive count, sum to the whole.
  halves = [losses.retinanet_loss(*[d[i:i + 2] for d in data], normalizer=global_pos)
            for i in (0, 2)]
  np.testing.assert_allclose(sum(h["total_loss"] for h in halves), whole["total_loss"], rtol=1e-5)
  scaled = losses.retinanet_loss(*data, normalizer=2 * global_pos)
  np.testing.assert_allclose(scaled["total_loss"], whole["total_loss"] / 2, rtol=1e-5)


def test_loss_gradients_are_finite_under_float16_inputs():
  logits, boxes, classes, box_targets, state = _batch(4)
  lg = tf.Variable(logits.astype(np.float16))
  with tf.GradientTape() as tape:
    total = losses.retinanet_loss(lg, boxes, classes, box_targets, state)["total_loss"]
  grad = tape.gradient(total, lg)
  assert total.dtype == tf.float32
  assert np.all(np.isfinite(grad.numpy()))


def test_moving_average_normalizer():
  np.testing.assert_allclose(losses.update_loss_normalizer(100.0, 20.0, 0.9), 92.0, rtol=1e-6)
  norm = losses.LossNormalizer(momentum=0.9)
  np.testing.assert_allclose(norm(20.0), 92.0, rtol=1e-6)
  np.testing.assert_allclose(norm(tf.constant(2.0)), 0.9 * 92.0 + 0.2, rtol=1e-6)
  assert losses.LossNormalizer(momentum=0.0)(7.0).numpy() == 7.0
  with pytest.raises(ValueError, match="momentum"):
    losses.LossNormalizer(momentum=1.0)


def test_loss_normalizer_in_replica_context():
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  with strategy.scope():
    norm = losses.LossNormalizer(momentum=0.9)

  @tf.function
  def step(num_positives):
    return strategy.run(norm, args=(num_positives,))

  np.testing.assert_allclose(step(tf.constant(20.0)), 92.0, rtol=1e-6)
  np.testing.assert_allclose(step(tf.constant(20.0)), 0.9 * 92.0 + 2.0, rtol=1e-6)
  np.testing.assert_allclose(norm.value.numpy(), 0.9 * 92.0 + 2.0, rtol=1e-6)
