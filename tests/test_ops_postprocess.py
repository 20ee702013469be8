"""Postprocess: every NMS mode vs numpy brute force / tf.image, padding, tf.function, saved model."""
import numpy as np
import pytest
import tensorflow as tf

from retinanet.ops import anchors as anchors_lib
from retinanet.ops import box_ops
from retinanet.ops import postprocess

IMAGE = (64, 64)
ANCHORS = anchors_lib.Anchors(IMAGE, 3, 4, 4.0, 1, (0.5, 1.0, 2.0))
PER_LEVEL = list(ANCHORS.counts_per_level.values())  # [192, 48]


def _logit(p):
  p = np.asarray(p, np.float64)
  return np.log(p / (1 - p)).astype(np.float32)


def _np_iou(a, b):
  ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = ih * iw
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return inter / union if union > 0 else 0.0


def np_hard_nms(boxes, scores, iou_threshold, score_threshold, max_out):
  """Greedy NMS: highest score first, drop boxes with IoU > iou_threshold to a kept one."""
  keep = []
  for i in np.argsort(-scores, kind="stable"):
    if scores[i] <= score_threshold or len(keep) == max_out:
      break
    if all(_np_iou(boxes[i], boxes[j]) <= iou_threshold for j in keep):
      keep.append(i)
  return keep, [scores[i] for i in keep]


def np_soft_nms(boxes, scores, sigma, score_threshold, max_out):
  """Gaussian soft-NMS (Bodla et al.): decay by exp(-iou**2 / sigma), drop at <= threshold."""
  s = scores.astype(np.float64).copy()
  alive = s > score_threshold
  keep, kept_scores = [], []
  while alive.any() and len(keep) < max_out:
    i = int(np.argmax(np.where(alive, s, -np.inf)))
    keep.append(i)
    kept_scores.append(s[i])
    alive[i] = False
    for j in np.flatnonzero(alive):
      s[j] *= np.exp(-_np_iou(boxes[i], boxes[j]) ** 2 / sigma)
    alive &= s > score_threshold
  return keep, kept_scores


# Random N(0, 1) test deltas are realistic for the scaled coder; the reference decodes alike.
VARIANCES = (0.1, 0.1, 0.2, 0.2)


def np_decode(deltas, anchors, var=VARIANCES):
  d = deltas.astype(np.float64) * var
  ha, wa = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
  cy, cx = anchors[:, 0] + ha / 2 + d[:, 0] * ha, anchors[:, 1] + wa / 2 + d[:, 1] * wa
  h = np.exp(np.minimum(d[:, 2], np.log(1000 / 16))) * ha
  w = np.exp(np.minimum(d[:, 3], np.log(1000 / 16))) * wa
  boxes = np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], 1)
  return np.clip(boxes, 0, [IMAGE[0], IMAGE[1], IMAGE[0], IMAGE[1]])


def np_detections(logits, deltas, anchors, mode, top_k, score_threshold, iou_threshold, sigma,
                  max_det, max_per_class, per_level):
  """Brute-force reference of generate_detections for one image: list of (score, class, box)."""
  scores = 1 / (1 + np.exp(-logits.astype(np.float64)))
  boxes = np_decode(deltas, anchors)
  n, c = scores.shape
  segments = np.cumsum([0] + (per_level or [n]))
  cands = []  # (anchor, class, score)
  for lo, hi in zip(segments[:-1], segments[1:]):
    if mode.startswith("global"):
      best = scores[lo:hi].max(1)
      for a in np.argsort(-best, kind="stable")[:top_k]:
        cands.append((lo + a, int(scores[lo + a].argmax()), best[a]))
    else:
      flat = scores[lo:hi].reshape(-1)
      for f in np.argsort(-flat, kind="stable")[:top_k]:
        cands.append((lo + f // c, f % c, flat[f]))
  cb = np.array([boxes[a] for a, _, _ in cands])
  cs = np.array([s for _, _, s in cands])
  cc = np.array([k for _, k, _ in cands])
  soft = mode.endswith("soft")
  nms = (lambda b, s, m: np_soft_nms(b, s, sigma, score_threshold, m)) if soft else (
      lambda b, s, m: np_hard_nms(b, s, iou_threshold, score_threshold, m))
  out = []
  if mode.startswith("global"):
    keep, kept = nms(cb, cs, max_det)
    out = [(s, cc[i], cb[i]) for i, s in zip(keep, kept)]
  else:
    for k in range(c):
      idx = np.flatnonzero(cc == k)
      keep, kept = nms(cb[idx], cs[idx], max_per_class)
      out += [(s, k, cb[idx[i]]) for i, s in zip(keep, kept)]
  out.sort(key=lambda t: -t[0])
  return out[:max_det]


def _random_outputs(seed, b=2, c=4):
  rng = np.random.RandomState(seed)
  n = ANCHORS.num_anchors
  logits = rng.normal(-1.5, 2.0, (b, n, c)).astype(np.float32)
  deltas = rng.normal(0, 1.0, (b, n, 4)).astype(np.float32)
  return logits, deltas


def _assert_same(got, ref, image):
  valid = int(got["valid_detections"][image])
  assert valid == len(ref)
  np.testing.assert_allclose(got["scores"][image, :valid], [r[0] for r in ref], rtol=1e-4)
  np.testing.assert_array_equal(got["classes"][image, :valid], [r[1] for r in ref])
  np.testing.assert_allclose(got["boxes"][image, :valid], [r[2] for r in ref], atol=1e-3)


def _check_against_numpy(mode, per_level, seed=0, **options):
  logits, deltas = _random_outputs(seed)
  kwargs = dict(nms_mode=mode, pre_nms_top_k=60, score_threshold=0.3, iou_threshold=0.5,
                soft_nms_sigma=0.5, max_detections=25, max_detections_per_class=5)
  levels = PER_LEVEL if per_level else None
  got = postprocess.generate_detections(logits, deltas, ANCHORS.boxes(), IMAGE,
                                        anchors_per_level=levels, variances=VARIANCES,
                                        **kwargs, **options)
  anchors = ANCHORS.boxes().numpy()
  for i in range(len(logits)):
    ref = np_detections(logits[i], deltas[i], anchors, mode, kwargs["pre_nms_top_k"],
                        kwargs["score_threshold"], kwargs["iou_threshold"],
                        kwargs["soft_nms_sigma"], kwargs["max_detections"],
                        kwargs["max_detections_per_class"], levels)
    assert len(ref) > 5
    _assert_same(got, ref, i)


@pytest.mark.parametrize("per_level", [True, False])
@pytest.mark.parametrize("mode", postprocess.NMS_MODES)
def test_modes_match_numpy_brute_force(mode, per_level):
  _check_against_numpy(mode, per_level)


@pytest.mark.parametrize("mode", ["global_hard", "global_soft"])
def test_global_modes_by_loop_match_numpy_brute_force(mode):
  """global_nms_by_loop (the TFLite path) selects what the tf.image op path selects."""
  _check_against_numpy(mode, per_level=False, seed=2, global_nms_by_loop=True)


def test_combined_and_per_class_hard_match_tf_image_ops():
  logits, deltas = _random_outputs(1, c=3)
  anchors = ANCHORS.boxes()
  n, c = logits.shape[1:]
  common = dict(pre_nms_top_k=n * c, score_threshold=0.2, iou_threshold=0.5, max_detections=30,
                max_detections_per_class=12)
  combined = postprocess.generate_detections(logits, deltas, anchors, IMAGE, "combined", **common)
  boxes = postprocess.decode_and_clip(deltas, anchors, IMAGE)
  # Boxes clipped to nothing are no detections (score 0), whatever their logits.
  scores = tf.where(box_ops.box_area_yxyx(boxes)[..., None] > 0, tf.sigmoid(logits), 0.0)
  ref = tf.image.combined_non_max_suppression(
      boxes[:, :, None], scores, 12, 30, 0.5, 0.2, clip_boxes=False)
  np.testing.assert_array_equal(combined["valid_detections"], ref.valid_detections)
  np.testing.assert_allclose(combined["scores"], ref.nmsed_scores, rtol=1e-6)
  np.testing.assert_allclose(combined["boxes"], ref.nmsed_boxes, atol=1e-4)
  np.testing.assert_array_equal(combined["classes"], ref.nmsed_classes)

  per_class = postprocess.generate_detections(logits, deltas, anchors, IMAGE, "per_class_hard",
                                              **common)
  for i in range(2):
    expected = []
    for k in range(c):
      keep = tf.image.non_max_suppression(boxes[i], scores[i, :, k], 12, 0.5, 0.2).numpy()
      expected += [(float(scores[i, j, k]), k) for j in keep]
    expected.sort(key=lambda t: -t[0])
    expected = expected[:30]
    valid = int(per_class["valid_detections"][i])
    assert valid == len(expected)
    np.testing.assert_allclose(per_class["scores"][i, :valid], [e[0] for e in expected], rtol=1e-6)
    np.testing.assert_array_equal(per_class["classes"][i, :valid], [e[1] for e in expected])


def _hand_case():
  # Boxes given as anchors with zero deltas: A and B overlap (IoU 0.6), C is apart.
  anchors = np.array([[0, 0, 10, 10], [0, 0, 10, 6], [30, 30, 40, 40]], np.float32)
  probs = np.array([[[0.9, 0.01], [0.8, 0.01], [0.01, 0.7]],      # all class 0 / C class 1
                    [[0.9, 0.01], [0.01, 0.8], [0.01, 0.01]]])    # A class 0, B class 1
  return anchors, _logit(probs), np.zeros((2, 3, 4), np.float32)


def test_hand_case_hard_soft_global():
  anchors, logits, deltas = _hand_case()
  args = dict(pre_nms_top_k=10, score_threshold=0.05, iou_threshold=0.5, max_detections=4,
              max_detections_per_class=4)
  hard = postprocess.generate_detections(logits, deltas, anchors, (50, 50), "per_class_hard",
                                         **args)
  np.testing.assert_array_equal(hard["valid_detections"], [2, 2])
  np.testing.assert_allclose(hard["scores"][0], [0.9, 0.7, 0, 0], rtol=1e-5)
  np.testing.assert_array_equal(hard["classes"][0], [0, 1, 0, 0])
  np.testing.assert_allclose(hard["boxes"][0, :2], anchors[[0, 2]])
  np.testing.assert_array_equal(hard["boxes"][0, 2:], np.zeros((2, 4)))
  # Different classes are not suppressed per class, but are globally.
  np.testing.assert_array_equal(hard["classes"][1, :2], [0, 1])
  glob = postprocess.generate_detections(logits, deltas, anchors, (50, 50), "global_hard", **args)
  np.testing.assert_array_equal(glob["valid_detections"], [2, 1])
  soft = postprocess.generate_detections(logits, deltas, anchors, (50, 50), "per_class_soft",
                                         soft_nms_sigma=0.5, **args)
  np.testing.assert_array_equal(soft["valid_detections"], [3, 2])
  np.testing.assert_allclose(soft["scores"][0, :3], [0.9, 0.7, 0.8 * np.exp(-0.36 / 0.5)],
                             rtol=1e-5)
  np.testing.assert_array_equal(soft["classes"][0, :3], [0, 1, 0])
  gsoft = postprocess.generate_detections(logits, deltas, anchors, (50, 50), "global_soft",
                                          soft_nms_sigma=0.5, **args)
  np.testing.assert_allclose(gsoft["scores"][1, :2], [0.9, 0.8 * np.exp(-0.36 / 0.5)], rtol=1e-5)


def test_per_level_top_k():
  # Level 1 scores all beat level 2's; per-level top-1 still keeps the best of level 2.
  anchors = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], np.float32)
  logits = _logit([[[0.9], [0.8], [0.6]]])
  deltas = np.zeros((1, 3, 4), np.float32)
  args = dict(nms_mode="global_hard", pre_nms_top_k=1, score_threshold=0.05, max_detections=5)
  over_all = postprocess.generate_detections(logits, deltas, anchors, (60, 60), **args)
  per_level = postprocess.generate_detections(logits, deltas, anchors, (60, 60),
                                              anchors_per_level=[2, 1], **args)
  np.testing.assert_allclose(over_all["scores"][0, :2], [0.9, 0.0], rtol=1e-5)
  np.testing.assert_allclose(per_level["scores"][0, :3], [0.9, 0.6, 0.0], rtol=1e-5)


def test_boxes_clipped_per_image_size():
  anchors = np.array([[-5, -5, 70, 70]], np.float32)
  logits = _logit([[[0.9]], [[0.9]]])
  got = postprocess.generate_detections(logits, np.zeros((2, 1, 4), np.float32), anchors,
                                        tf.constant([[64, 64], [32, 48]]), "global_hard",
                                        max_detections=2)
  np.testing.assert_allclose(got["boxes"][:, 0], [[0, 0, 64, 64], [0, 0, 32, 48]])


@pytest.mark.parametrize("mode", postprocess.NMS_MODES)
def test_shapes_dtypes_and_unknown_batch_in_tf_function(mode):
  logits, deltas = _random_outputs(2, b=3, c=2)
  n = ANCHORS.num_anchors
  anchors = ANCHORS.boxes()

  @tf.function(input_signature=[tf.TensorSpec([None, n, 2], tf.float16),
                                tf.TensorSpec([None, n, 4], tf.float32)])
  def detect(lg, dl):
    return postprocess.generate_detections(lg, dl, anchors, IMAGE, mode, pre_nms_top_k=20,
                                           score_threshold=0.5, max_detections=7,
                                           max_detections_per_class=7,
                                           anchors_per_level=PER_LEVEL)

  got = detect(tf.constant(logits, tf.float16), deltas)
  assert got["boxes"].shape == (3, 7, 4) and got["boxes"].dtype == tf.float32
  assert got["scores"].shape == (3, 7) and got["classes"].dtype == tf.int32
  assert got["valid_detections"].dtype == tf.int32
  eager = postprocess.generate_detections(logits.astype(np.float16), deltas, anchors, IMAGE, mode,
                                          pre_nms_top_k=20, score_threshold=0.5,
                                          max_detections=7, max_detections_per_class=7,
                                          anchors_per_level=PER_LEVEL)
  for key in got:
    np.testing.assert_allclose(got[key], eager[key], rtol=1e-6)
  for i, v in enumerate(got["valid_detections"].numpy()):
    assert np.all(got["scores"][i, v:] == 0) and np.all(got["boxes"][i, v:] == 0)
    assert np.all(np.diff(got["scores"][i, :v]) <= 0)


def test_saved_model_export(tmp_path):
  n = ANCHORS.num_anchors
  anchors = ANCHORS.boxes()

  class Detector(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, n, 3], tf.float32),
                                  tf.TensorSpec([None, n, 4], tf.float32)])
    def detect(self, lg, dl):
      return postprocess.generate_detections(lg, dl, anchors, IMAGE, "per_class_soft",
                                             pre_nms_top_k=30, max_detections=10,
                                             max_detections_per_class=5)

  module = Detector()
  tf.saved_model.save(module, str(tmp_path))
  loaded = tf.saved_model.load(str(tmp_path))
  logits, deltas = _random_outputs(3, b=2, c=3)
  got, want = loaded.detect(logits, deltas), module.detect(logits, deltas)
  for key in want:
    np.testing.assert_allclose(got[key], want[key])


def test_modes_agree_with_config():
  from retinanet import config
  assert postprocess.NMS_MODES == config.NMS_MODES


def test_bad_arguments_raise():
  logits, deltas = _random_outputs(0, b=1)
  with pytest.raises(ValueError, match="nms_mode"):
    postprocess.generate_detections(logits, deltas, ANCHORS.boxes(), IMAGE, "soft")
  with pytest.raises(ValueError, match="soft_nms_sigma"):
    postprocess.generate_detections(logits, deltas, ANCHORS.boxes(), IMAGE, "global_soft",
                                    soft_nms_sigma=0.0)


@pytest.mark.parametrize("nms_mode", postprocess.NMS_MODES)
def test_boxes_in_the_padding_are_dropped_before_the_top_k(nms_mode):
  """A resized 32x64 image padded to 64x64: the region below row 32 is padding. Boxes there
  clip to nothing; even with the highest scores they take no output slot, and the slots go
  to the boxes inside the image, in score order (hand-computed)."""
  anchors = np.array([[0, 0, 16, 16], [0, 40, 16, 60],            # inside the image
                      [40, 0, 56, 16], [48, 30, 64, 50]], np.float32)  # in the padding
  logits = np.full([1, 4, 2], -20.0, np.float32)
  logits[0, :, 0] = _logit([0.6, 0.5, 0.95, 0.9])
  result = postprocess.generate_detections(
      tf.constant(logits), tf.zeros([1, 4, 4]), anchors, tf.constant([[32.0, 64.0]]),
      nms_mode=nms_mode, max_detections=2, max_detections_per_class=2, score_threshold=0.05)
  assert int(result["valid_detections"][0]) == 2
  np.testing.assert_allclose(result["boxes"][0].numpy(), anchors[:2], atol=1e-5)
  np.testing.assert_allclose(result["scores"][0].numpy(), [0.6, 0.5], atol=1e-4)
  # Without the covered region (the whole 64x64 input), the padding boxes win.
  whole = postprocess.generate_detections(
      tf.constant(logits), tf.zeros([1, 4, 4]), anchors, IMAGE, nms_mode=nms_mode,
      max_detections=2, max_detections_per_class=2, score_threshold=0.05)
  np.testing.assert_allclose(whole["boxes"][0].numpy(), anchors[2:], atol=1e-5)
