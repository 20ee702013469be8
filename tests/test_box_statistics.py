"""The statistics stage on tensorflow-transform: analyzers against numpy, coverage against
brute force, a planted train/val skew, poor coverage with a suggestion that fixes it, plots."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data import box_statistics as bs
from retinanet import layout
from retinanet.dataloader import schema
from retinanet.ops import box_ops
from retinanet.ops.anchors import Anchors
from retinanet.training import anchor_policy

LAYOUT = Anchors((192, 192), 3, 6, 4.0, 3, (0.5, 1.0, 2.0))
SPEC = bs.AnalysisSpec(LAYOUT, positive_iou=0.5, negative_iou=0.4, num_classes=4,
                       max_instances=10)
CLASS_NAMES = ["a", "b", "c", "only_in_val"]


def _orientation(index):
  """The EXIF orientation of the index-th record: 1..8 in turn, and None (a record written
  before image/orientation existed, read as 1) every ninth."""
  return None if index % 9 == 0 else index % 9


def _example(height, width, boxes, labels, crowd, orientation=None) -> bytes:
  """A record with the keys the statistics stage reads (boxes normalized yxyx)."""
  ex = tf.train.Example()
  f = ex.features.feature
  if orientation is not None:
    f[schema.ORIENTATION].int64_list.value.append(orientation)
  f[schema.HEIGHT].int64_list.value.append(height)
  f[schema.WIDTH].int64_list.value.append(width)
  for i, key in enumerate((schema.YMIN, schema.XMIN, schema.YMAX, schema.XMAX)):
    f[key].float_list.value.extend([float(b[i]) for b in boxes])
  f[schema.LABEL].int64_list.value.extend(labels)
  f[schema.IS_CROWD].int64_list.value.extend(crowd)
  return ex.SerializeToString()


def _split(rng, num_images, sides, ratios, classes):
  """Images of random size with 0-6 boxes of sqrt-area `sides` (px, at the model input
  scale), aspect ratio from `ratios`, a tenth of them crowd regions. Images are 500-600 px
  a side, so a box (at most 143 px long at the input scale) is never clipped."""
  images = []
  for _ in range(num_images):
    h, w = int(rng.integers(500, 600)), int(rng.integers(500, 600))
    scale = min(192 / h, 192 / w)
    boxes, labels, crowd = [], [], []
    for _ in range(int(rng.integers(0, 7))):
      size = np.exp(rng.uniform(np.log(sides[0]), np.log(sides[1]))) / scale
      ratio = rng.choice(ratios)
      bw, bh = min(size * np.sqrt(ratio), w - 1), min(size / np.sqrt(ratio), h - 1)
      y, x = rng.uniform(0, h - bh), rng.uniform(0, w - bw)
      boxes.append((y / h, x / w, (y + bh) / h, (x + bw) / w))
      labels.append(int(rng.choice(classes)))
      crowd.append(int(rng.uniform() < 0.1))
    images.append((h, w, boxes, labels, crowd))
  return images


def _write(images, directory):
  os.makedirs(directory)
  path = os.path.join(directory, "data_tfrecord-00000-of-00001.gz")
  with tf.io.TFRecordWriter(path, options="GZIP") as writer:
    for index, image in enumerate(images):
      writer.write(_example(*image, orientation=_orientation(index)))
  return os.path.join(directory, "*")


def _numpy_measures(images):
  """Per-box measures at the model input scale, computed independently in numpy."""
  rows = []
  for h, w, boxes, labels, crowd in images:
    scale = min(192 / h, 192 / w)
    sy, sx = max(round(h * scale), 1) / h, max(round(w * scale), 1) / w
    for box, label, is_crowd in zip(boxes, labels, crowd):
      if not is_crowd:
        rows.append((box[0] * h * sy, box[1] * w * sx, box[2] * h * sy, box[3] * w * sx, label))
  a = np.array(rows, np.float64)
  px = a[:, :4].astype(np.float32)
  bw, bh = px[:, 3] - px[:, 1], px[:, 2] - px[:, 0]
  best = box_ops.pairwise_iou_yxyx(tf.constant(px), LAYOUT.boxes()).numpy().max(axis=1)
  return {"width": bw, "height": bh, "area": bw * bh, "sqrt_area": np.sqrt(bw * bh),
          "aspect_ratio": bw / bh, "best_anchor_iou": best, "label": a[:, 4].astype(int)}


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
  """Train: elongated boxes (ratios 1:5 and 5:1), classes a-c. Val: planted skew, boxes
  about twice as large and a class that train never has. One analysis run for the module."""
  root = tmp_path_factory.mktemp("stats")
  rng = np.random.default_rng(7)
  data = {"train": _split(rng, 120, (24, 40), (0.2, 5.0), (0, 1, 2)),
          "val": _split(rng, 60, (48, 64), (0.2, 5.0), (0, 1, 2, 3))}
  patterns = {split: _write(images, str(root / f"Split-{split}"))
              for split, images in data.items()}
  out = str(root / "statistics")
  report = bs.run_statistics(file_patterns=patterns, spec=SPEC, output_dir=out,
                             class_names=CLASS_NAMES, min_coverage=0.9)
  return data, report, out


def test_counts_and_histograms_equal_numpy(analyzed):
  data, report, _ = analyzed
  for split, images in data.items():
    s = report["splits"][split]
    m = _numpy_measures(images)
    crowd = sum(sum(c) for *_, c in images)
    per_image = [sum(1 for c in image[4] if not c) for image in images]
    assert (s["num_images"], s["num_boxes"], s["num_crowd"]) == (
        len(images), len(m["width"]), crowd)
    assert s["negative_images"] == sum(1 for n in per_image if n == 0)
    assert s["oriented_images"] == sum(_orientation(i) not in (None, 1)
                                       for i in range(len(images))) > 0
    assert s["boxes_per_class"] == np.bincount(m["label"], minlength=4).tolist()
    for name, boundaries in bs.BOX_MEASURES.items():
      expected = np.bincount(np.searchsorted(boundaries, m[name], side="right"),
                             minlength=len(boundaries) + 1)
      got = np.array(s[name]["histogram"]["counts"])
      # Values within float32 rounding of a boundary may land in the neighbouring bin.
      assert got.sum() == expected.sum() and np.abs(got - expected).sum() <= 2, name
    assert s["boxes_per_image"]["histogram"]["counts"] == np.bincount(
        per_image, minlength=SPEC.max_instances + 1).tolist()
    # The exact ranges data validation checks (tft.min / tft.max).
    expected_ranges = {**{name: m[name] for name in ("width", "height", "sqrt_area")},
                       "boxes_per_image": per_image,
                       "image_height": [image[0] for image in images],
                       "image_width": [image[1] for image in images]}
    for name, values in expected_ranges.items():
      np.testing.assert_allclose(s[name]["range"], [np.min(values), np.max(values)],
                                 rtol=1e-5, err_msg=name)


def test_quantiles_within_the_documented_rank_error(analyzed):
  data, report, _ = analyzed
  for split, images in data.items():
    s = report["splits"][split]
    m = _numpy_measures(images)
    for name in ("width", "height", "area", "sqrt_area", "aspect_ratio", "best_anchor_iou"):
      values = np.sort(m[name])
      n = len(values)
      for p, q in zip(s["quantile_probabilities"], s[name]["quantiles"]):
        lo = np.searchsorted(values, q * (1 - 1e-5), side="left") / n
        hi = np.searchsorted(values, q * (1 + 1e-5), side="right") / n
        # q's rank interval [lo, hi] must come within epsilon (+ one element) of p.
        assert lo - bs.QUANTILE_EPSILON - 1 / n <= p <= hi + bs.QUANTILE_EPSILON + 1 / n, (
            split, name, p, q, lo, hi)


def test_coverage_equals_brute_force_and_is_poor_for_elongated_boxes(analyzed):
  data, report, _ = analyzed
  best = _numpy_measures(data["train"])["best_anchor_iou"]
  coverage = report["splits"]["train"]["coverage"]
  assert coverage["positive"] == pytest.approx(np.mean(best >= 0.5), abs=1e-9)
  assert coverage["background"] == pytest.approx(np.mean(best < 0.4), abs=1e-9)
  assert coverage["mean_best_anchor_iou"] == pytest.approx(best.mean(), rel=1e-4)
  assert report["coverage"] == coverage["positive"] < 0.3
  assert not report["coverage_ok"]
  suggestion = report["suggestion"]
  assert suggestion["changes_layout"] and suggestion["coverage_on_sample"]["positive"] >= 0.9
  assert suggestion["sample_boxes"] == report["splits"]["train"]["num_boxes"]  # all sampled
  assert min(suggestion["aspect_ratios"]) <= 0.3 and max(suggestion["aspect_ratios"]) >= 3.0
  line = anchor_policy.coverage_line(report)
  assert "suggested anchor_size" in line and "floor 90%" in line


def test_planted_skew_is_reported_as_anomalies(analyzed):
  _, report, _ = analyzed
  kinds = {a["kind"]: a for a in report["anomalies"]}
  assert kinds["category_in_one_split"]["category"] == "only_in_val"
  assert kinds["category_in_one_split"]["split"] == "val"
  assert kinds["sqrt_area_drift"]["value"] > 0.1
  assert "aspect_ratio_drift" not in kinds  # both splits draw ratios 1:5 and 5:1
  train = report["splits"]["train"]
  assert bs.drift_anomalies(train, train, CLASS_NAMES) == []


def test_drift_measures_by_hand():
  assert bs.js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)
  assert bs.js_divergence([5, 5], [1, 1]) == pytest.approx(0.0)
  # p = (1/2, 1/2), q = (1, 0): m = (3/4, 1/4); 0.5 KL(p||m) + 0.5 KL(q||m).
  expected = 0.5 * (0.5 * np.log2(0.5 / 0.75) + 0.5 * np.log2(0.5 / 0.25)) + 0.5 * np.log2(4 / 3)
  assert bs.js_divergence([1, 1], [1, 0]) == pytest.approx(expected)


def test_report_file_and_plots(analyzed):
  _, report, out = analyzed
  with open(os.path.join(out, layout.BOX_STATISTICS_REPORT_FILE)) as f:
    assert json.load(f)["coverage"] == report["coverage"]
  assert sorted(report["plots"]) == ["aspect_ratios", "best_anchor_iou", "box_sizes"]
  for path in report["plots"].values():
    with Image.open(path) as image:
      assert image.format == "PNG" and image.size == (900, 420)
      # Something was drawn besides the white background and the axes.
      assert len(image.getcolors(100000)) > 3
