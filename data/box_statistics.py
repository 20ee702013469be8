"""Dataset statistics of the converted Examples, on tensorflow-transform, and the anchor fit.

`analyze_examples` runs one Beam pipeline (DirectRunner here, Dataflow at
scale): for each split, tensorflow-transform analyzers over the records give
  - box width, height, area, sqrt(area) and aspect ratio (w / h) in pixels at the
    model's input scale (the evaluation resize of the chosen config):
    quantiles (tft.quantiles, rank error <= QUANTILE_EPSILON * n) and exact
    fixed-bin histograms;
  - each box's best-anchor IoU against the config's anchor layout (exact,
    retinanet/ops/anchor_fit.py): histogram, quantiles, coverage fractions;
  - boxes per image and per class, image heights and widths (as displayed, the
    frame of the boxes), crowd boxes, negative images and images whose EXIF
    orientation turns them (image/orientation != 1: "oriented_images");
and a uniform sample of training boxes, on which an anchor layout is suggested
when coverage is below the floor. `build_report` adds train/val drift
anomalies (in the spirit of TFX's ExampleValidator: reported, not raised).

Crowd boxes are counted but left out of box statistics and coverage: the
matcher treats them as ignore regions, not as objects to learn.

Analyzer results leave tensorflow-transform the usual way: the
preprocessing_fn returns them broadcast to the batch, and `read_analyzers`
runs the written transform graph on one dummy record.

tensorflow-transform runs in its TF1 graph mode (`force_tf_compat_v1`): the
analyzers are the same, and it skips tracing the preprocessing_fn into TF2
SavedModels for every phase, which took about 7 of the stage's 22 s on the
sample data (BENCHMARKS.md "Main job (make run)").
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow as tf

from retinanet import fileio, layout
from retinanet.dataloader import schema
from retinanet.ops import anchor_fit
from retinanet.ops.anchors import Anchors

QUANTILE_BUCKETS = 20
QUANTILE_EPSILON = 0.005
SAMPLE_BOXES = 20000

# Fixed histogram bins, the same for every split so that splits compare bin by bin.
# Each histogram has len(boundaries) + 1 counts: below the first boundary, between
# consecutive boundaries, and at or above the last one.
SIZE_BOUNDARIES = tuple(2.0 ** (k / 2.0) for k in range(0, 27))  # 1 px .. 8192 px
RATIO_BOUNDARIES = tuple(2.0 ** (k / 4.0) for k in range(-16, 17))  # 1/16 .. 16
IOU_BOUNDARIES = tuple(k / 20.0 for k in range(1, 20))  # 0.05 .. 0.95
BOX_MEASURES = {"width": SIZE_BOUNDARIES, "height": SIZE_BOUNDARIES,
                "sqrt_area": SIZE_BOUNDARIES, "aspect_ratio": RATIO_BOUNDARIES,
                "best_anchor_iou": IOU_BOUNDARIES}
AREA = "area"  # quantiles only (pixels squared)
# Measures whose exact min and max are kept too: the ranges data validation checks.
RANGE_MEASURES = ("width", "height", "sqrt_area", "boxes_per_image", "image_height",
                  "image_width")

# The keys read, with the schema's own feature spec (one definition for writer and readers),
# except image/orientation: tf.Transform's schema has no FixedLen default, so it is read as
# a list of at most one value (none in records written before it existed: orientation 1).
FEATURE_SPEC = {
    **{key: schema.FEATURE_SPEC[key] for key in (
        schema.HEIGHT, schema.WIDTH, schema.YMIN, schema.XMIN, schema.YMAX, schema.XMAX,
        schema.LABEL, schema.IS_CROWD)},
    schema.ORIENTATION: tf.io.VarLenFeature(tf.int64),
}


@dataclasses.dataclass(frozen=True)
class AnalysisSpec:
  """What the analyzers measure against: the model's input size, anchors and matcher."""
  anchors: Anchors
  positive_iou: float
  negative_iou: float
  num_classes: int
  max_instances: int = 100

  @property
  def input_size(self):
    return self.anchors.image_size


def _one_hot_bins(values: tf.Tensor, boundaries: Sequence[float]) -> tf.Tensor:
  """[n, len(boundaries) + 1]: each value's fixed bin, one-hot."""
  bins = tf.searchsorted(tf.constant(boundaries, tf.float32), tf.reshape(values, [-1]),
                         side="right")
  return tf.one_hot(bins, len(boundaries) + 1, dtype=tf.float32)


def _by_split(columns: tf.Tensor, split: tf.Tensor, num_splits: int, fill: float) -> tf.Tensor:
  """[n, k] -> [n, num_splits * k]: block j holds the rows whose split is j and `fill`
  elsewhere (0 for sums, NaN for quantiles, which ignore NaN, +-inf for min and max)."""
  fill = tf.cast(fill, columns.dtype)
  return tf.concat([tf.where(tf.equal(split, j)[:, None], columns, fill)
                    for j in range(num_splits)], axis=1)


def _packed_sum(columns: tf.Tensor) -> tf.Tensor:
  """Exact per-column sums of [n, k] as one tft.sum (one analyzer instead of one per
  statistic: the Beam graph, and its set-up time, scale with the number of analyzers).
  A zero row makes an empty batch well defined."""
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  return tft.sum(tf.concat([columns, tf.zeros([1, columns.shape[1]], columns.dtype)], 0),
                 reduce_instance_dims=False)


def _packed_range(columns: tf.Tensor, split: tf.Tensor, num_splits: int):
  """Exact per-split, per-column (min, max) of [n, k], each [num_splits * k] (one tft.min,
  one tft.max); (inf, -inf) for a column with no values."""
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  columns = tf.cast(columns, tf.float32)
  k = columns.shape[1] * num_splits
  low = _by_split(columns, split, num_splits, float("inf"))
  high = _by_split(columns, split, num_splits, float("-inf"))
  return (tft.min(tf.concat([low, tf.fill([1, k], float("inf"))], 0),
                  reduce_instance_dims=False),
          tft.max(tf.concat([high, tf.fill([1, k], float("-inf"))], 0),
                  reduce_instance_dims=False))


def _packed_quantiles(columns: tf.Tensor) -> tf.Tensor:
  """[k, QUANTILE_BUCKETS - 1] boundaries of each column of [n, k] (one sketch per column,
  in one tft.quantiles analyzer)."""
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  return tft.quantiles(tf.cast(columns, tf.float32), QUANTILE_BUCKETS, QUANTILE_EPSILON,
                       reduce_instance_dims=False)


def box_measures(inputs: Mapping[str, Any], spec: AnalysisSpec) -> Dict[str, tf.Tensor]:
  """Per-box tensors of a batch of parsed records (FEATURE_SPEC): non-crowd boxes only.

  Returns width, height, area, sqrt_area, aspect_ratio, best_anchor_iou, label
  and box_image (the box's image in the batch), one value per non-crowd box; and
  boxes_per_image (non-crowd boxes), crowd_per_image, image_height and image_width,
  one value per image.
  """
  xmin = inputs[schema.XMIN]
  rows = xmin.indices[:, 0]
  heights = tf.reshape(inputs[schema.HEIGHT], [-1])
  widths = tf.reshape(inputs[schema.WIDTH], [-1])
  image_hw = tf.stack([tf.gather(heights, rows), tf.gather(widths, rows)], axis=1)
  normalized = tf.stack([inputs[schema.YMIN].values, xmin.values, inputs[schema.YMAX].values,
                         inputs[schema.XMAX].values], axis=1)
  crowd = inputs[schema.IS_CROWD].values
  keep = tf.equal(crowd, 0)
  pixels = tf.boolean_mask(anchor_fit.boxes_at_input_scale(normalized, image_hw, spec.input_size),
                           keep)
  box_h = pixels[:, 2] - pixels[:, 0]
  box_w = pixels[:, 3] - pixels[:, 1]
  num_images = tf.shape(heights)[0]
  per_image = tf.math.unsorted_segment_sum(tf.cast(keep, tf.float32), rows, num_images)
  crowd_per_image = tf.math.unsorted_segment_sum(crowd, rows, num_images)
  return {
      "width": box_w, "height": box_h, AREA: box_w * box_h,
      "sqrt_area": tf.sqrt(box_w * box_h),
      "aspect_ratio": tf.math.divide_no_nan(box_w, box_h),
      "best_anchor_iou": anchor_fit.best_anchor_iou(pixels, spec.anchors),
      "label": tf.boolean_mask(inputs[schema.LABEL].values, keep),
      "box_image": tf.boolean_mask(rows, keep),
      "boxes_per_image": per_image,
      "crowd_per_image": crowd_per_image,
      "image_height": tf.cast(heights, tf.float32),
      "image_width": tf.cast(widths, tf.float32),
  }


# The measures analyzed together: one value per non-crowd box, and one per image.
BOX_COLUMNS = ("width", "height", AREA, "sqrt_area", "aspect_ratio", "best_anchor_iou")
IMAGE_COLUMNS = ("boxes_per_image", "image_height", "image_width")
# The column added to every record: its split's index in the sorted split names. All
# splits go through one AnalyzeDataset, and every statistic is computed per split.
SPLIT_KEY = "__split__"
ANALYZED_FEATURE_SPEC = {**FEATURE_SPEC, SPLIT_KEY: tf.io.FixedLenFeature([1], tf.int64)}


def make_preprocessing_fn(spec: AnalysisSpec, num_splits: int):
  """The tensorflow-transform preprocessing_fn whose outputs are the analyzer results.

  Every output holds one statistic for every split, split-major: [num_splits * width]
  values (`read_analyzers` takes them apart). Measures of one kind share an analyzer (per
  box: one quantiles, one min, one max, one sum of every histogram and count; per image:
  the same), and the splits share them too: 8 analyzers in all, where one AnalyzeDataset
  per split made 22 and one analyzer per statistic 72. The stage's Beam set-up scales
  with the number of analyzers.
  """

  def preprocessing_fn(inputs):
    m = box_measures(inputs, spec)
    image_split = tf.reshape(inputs[SPLIT_KEY], [-1])
    box_split = tf.gather(image_split, m["box_image"])
    per_box_sums = {  # name: [n_boxes, width] columns summed in one analyzer
        "num_boxes": tf.ones_like(m["width"])[:, None],
        "positive_boxes": tf.cast(m["best_anchor_iou"] >= spec.positive_iou, tf.float32)[:, None],
        "background_boxes": tf.cast(m["best_anchor_iou"] < spec.negative_iou, tf.float32)[:, None],
        "best_anchor_iou_sum": m["best_anchor_iou"][:, None],
        "boxes_per_class": tf.one_hot(m["label"], spec.num_classes, dtype=tf.float32),
        **{f"{name}_histogram": _one_hot_bins(m[name], bounds)
           for name, bounds in BOX_MEASURES.items()},
    }
    orientation = inputs[schema.ORIENTATION]  # at most one value per image; none: 1
    oriented = tf.math.unsorted_segment_sum(
        tf.cast(tf.not_equal(orientation.values, 1), tf.int64), orientation.indices[:, 0],
        tf.shape(image_split)[0])
    per_image_sums = {
        "num_images": tf.ones_like(image_split)[:, None],
        "num_crowd": m["crowd_per_image"][:, None],
        "negative_images": tf.cast(tf.equal(m["boxes_per_image"], 0.0), tf.int64)[:, None],
        "oriented_images": tf.minimum(oriented, 1)[:, None],
        "boxes_per_image_histogram": tf.cast(_one_hot_bins(
            m["boxes_per_image"], tuple(float(k) for k in range(1, spec.max_instances + 1))),
            tf.int64),
    }
    results = {}  # name: [num_splits, width]
    for sums, split, dtype in ((per_box_sums, box_split, tf.float32),
                               (per_image_sums, image_split, tf.int64)):
      columns = tf.concat([tf.cast(c, dtype) for c in sums.values()], axis=1)
      packed = tf.reshape(_packed_sum(_by_split(columns, split, num_splits, 0)),
                          [num_splits, columns.shape[1]])
      offset = 0
      for name, c in sums.items():
        results[name] = packed[:, offset:offset + c.shape[1]]
        offset += c.shape[1]
    for names, split in ((BOX_COLUMNS, box_split), (IMAGE_COLUMNS, image_split)):
      values = tf.stack([m[name] for name in names], axis=1)
      quantiles = tf.reshape(
          _packed_quantiles(_by_split(values, split, num_splits, float("nan"))),
          [num_splits, len(names), QUANTILE_BUCKETS - 1])
      low, high = (tf.reshape(v, [num_splits, len(names)])
                   for v in _packed_range(values, split, num_splits))
      for i, name in enumerate(names):
        results[f"{name}_quantiles"] = quantiles[:, i]
        if name in RANGE_MEASURES:
          results[f"{name}_min"], results[f"{name}_max"] = low[:, i:i + 1], high[:, i:i + 1]
    batch = tf.shape(image_split)[0]
    return {name: tf.zeros([batch, 1]) + tf.reshape(tf.cast(value, tf.float32), [1, -1])
            for name, value in results.items()}

  return preprocessing_fn


def _dummy_record() -> Dict[str, Any]:
  """One parsed record to run the transform graph on (its outputs are constants)."""
  example = tf.train.Example()
  f = example.features.feature
  f[schema.HEIGHT].int64_list.value.append(1)
  f[schema.WIDTH].int64_list.value.append(1)
  for key, value in ((schema.YMIN, 0.0), (schema.XMIN, 0.0), (schema.YMAX, 1.0),
                     (schema.XMAX, 1.0)):
    f[key].float_list.value.append(value)
  f[schema.LABEL].int64_list.value.append(0)
  f[schema.IS_CROWD].int64_list.value.append(0)
  f[SPLIT_KEY].int64_list.value.append(0)
  return tf.io.parse_example([example.SerializeToString()], ANALYZED_FEATURE_SPEC)


def read_analyzers(transform_dir: str, splits: Sequence[str]) -> Dict[str, Dict[str, np.ndarray]]:
  """{split: {statistic: values}} held by the transform graph written by `analyze_examples`
  for `splits` (sorted, as analyzed)."""
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  with tf.Graph().as_default():  # a TF1 SavedModel (force_tf_compat_v1 below)
    outputs = tft.TFTransformOutput(transform_dir).transform_raw_features(_dummy_record())
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.tables_initializer())
      values = session.run(outputs)
  per_split = {name: np.asarray(value)[0].reshape(len(splits), -1)
               for name, value in values.items()}
  return {split: {name: value[j] for name, value in per_split.items()}
          for j, split in enumerate(splits)}


def _sample_rows(batch: pa.RecordBatch, spec: AnalysisSpec):
  """Yields (ymin, xmin, ymax, xmax) in model-input pixels for each non-crowd box of a batch."""
  columns = {name: batch.column(batch.schema.get_field_index(name)) for name in FEATURE_SPEC}
  parents = pa.compute.list_parent_indices(columns[schema.XMIN]).to_numpy()
  if parents.size == 0:
    return
  heights = pa.compute.list_flatten(columns[schema.HEIGHT]).to_numpy()[parents]
  widths = pa.compute.list_flatten(columns[schema.WIDTH]).to_numpy()[parents]
  normalized = np.stack([pa.compute.list_flatten(columns[key]).to_numpy(zero_copy_only=False)
                         for key in (schema.YMIN, schema.XMIN, schema.YMAX, schema.XMAX)], 1)
  crowd = pa.compute.list_flatten(columns[schema.IS_CROWD]).to_numpy()
  pixels = anchor_fit.boxes_at_input_scale(
      normalized, np.stack([heights, widths], 1), spec.input_size).numpy()
  for row in pixels[crowd == 0]:
    yield tuple(float(v) for v in row)


def _write_sample(rows: Any, path: str) -> None:
  fileio.write_json(path, rows, allow_nan=True)


def transform_dir(output_dir: str) -> str:
  return os.path.join(output_dir, "transform_fn")


def sample_path(output_dir: str) -> str:
  return os.path.join(output_dir, "train_box_sample.json")


def _with_split(batch: pa.RecordBatch, index: int) -> pa.RecordBatch:
  """The batch with its SPLIT_KEY column (empty as read: no record has it) set to index."""
  position = batch.schema.get_field_index(SPLIT_KEY)
  arrays = list(batch.columns)
  arrays[position] = pa.array([[index]] * batch.num_rows, type=batch.schema.field(position).type)
  return pa.RecordBatch.from_arrays(arrays, schema=batch.schema)


def analyze_examples(*, file_patterns: Mapping[str, str], spec: AnalysisSpec, output_dir: str,
                     beam_pipeline: Optional[beam.Pipeline] = None,
                     sample_split: str = "train", sample_size: int = SAMPLE_BOXES) -> None:
  """Writes the analyzer graph of all splits under `output_dir` and a sample of boxes.

  `file_patterns` maps split names to TFRecord globs (gzip). Runs in
  `beam_pipeline` (a fresh DirectRunner pipeline when None).
  """
  import tensorflow_transform.beam as tft_beam  # pylint: disable=g-import-not-at-top
  from tensorflow_transform.tf_metadata import schema_utils  # pylint: disable=g-import-not-at-top
  from tfx_bsl.public import tfxio  # pylint: disable=g-import-not-at-top

  record_schema = schema_utils.schema_from_feature_spec(ANALYZED_FEATURE_SPEC)
  tf.io.gfile.makedirs(output_dir)
  temp_dir = os.path.join(output_dir, "tft_tmp")  # analyzer intermediates, removed after
  pipeline = beam_pipeline if beam_pipeline is not None else beam.Pipeline()
  with tft_beam.Context(temp_dir=temp_dir, force_tf_compat_v1=True):
    with pipeline as p:
      splits, adapter_config = [], None
      for index, (split, pattern) in enumerate(sorted(file_patterns.items())):
        source = tfxio.TFExampleRecord(file_pattern=pattern, schema=record_schema,
                                       telemetry_descriptors=["retinanet", "box_statistics"])
        adapter_config = source.TensorAdapterConfig()  # the same for every split
        batches = p | f"Read[{split}]" >> source.BeamSource()
        splits.append(batches | f"Mark[{split}]" >> beam.Map(_with_split, index))
        if split == sample_split:
          _ = (batches
               | "SampleBoxes" >> beam.FlatMap(_sample_rows, spec)
               | "Sample" >> beam.combiners.Sample.FixedSizeGlobally(sample_size)
               | "WriteSample" >> beam.Map(_write_sample, sample_path(output_dir)))
      transform_fn = ((tuple(splits) | "Splits" >> beam.Flatten(), adapter_config)
                      | "Analyze" >> tft_beam.AnalyzeDataset(
                          make_preprocessing_fn(spec, len(splits))))
      _ = transform_fn | "Write" >> tft_beam.WriteTransformFn(transform_dir(output_dir))
  if tf.io.gfile.exists(temp_dir):
    tf.io.gfile.rmtree(temp_dir)


# --- The report: per-split summaries, anchor coverage, drift anomalies, suggestion. ---

@dataclasses.dataclass(frozen=True)
class DriftThresholds:
  """Train/val differences reported as anomalies (TFDV's measures: L-infinity distance for
  categorical frequencies, Jensen-Shannon divergence (base 2, in [0, 1]) for histograms)."""
  class_frequency_linf: float = 0.1
  box_size_js: float = 0.1
  aspect_ratio_js: float = 0.1


def _quantile_probabilities() -> List[float]:
  return [round(k / QUANTILE_BUCKETS, 4) for k in range(1, QUANTILE_BUCKETS)]


def split_summary(analyzers: Mapping[str, np.ndarray]) -> Dict[str, Any]:
  """One split's statistics (JSON-ready) from its analyzer results."""
  num_boxes = int(analyzers["num_boxes"][0])

  def fraction(key: str) -> float:
    return float(analyzers[key][0]) / num_boxes if num_boxes else 0.0

  positive, background = fraction("positive_boxes"), fraction("background_boxes")
  summary = {
      "num_images": int(analyzers["num_images"][0]),
      "num_boxes": num_boxes,
      "num_crowd": int(analyzers["num_crowd"][0]),
      "negative_images": int(analyzers["negative_images"][0]),
      "oriented_images": int(analyzers["oriented_images"][0]),
      "boxes_per_class": [int(v) for v in analyzers["boxes_per_class"]],
      "coverage": {"positive": positive, "ignored_only": max(1.0 - positive - background, 0.0),
                   "background": background, "no_positive": 1.0 - positive,
                   "mean_best_anchor_iou": fraction("best_anchor_iou_sum")},
      "quantile_probabilities": _quantile_probabilities(),
  }
  measures = {**BOX_MEASURES, AREA: None, "boxes_per_image": None, "image_height": None,
              "image_width": None}
  for name, boundaries in measures.items():
    entry = {"quantiles": [float(v) for v in analyzers[f"{name}_quantiles"]]}
    if boundaries is not None:
      entry["histogram"] = {"boundaries": list(boundaries),
                            "counts": [int(v) for v in analyzers[f"{name}_histogram"]]}
    summary[name] = entry
  for name in RANGE_MEASURES:
    low, high = float(analyzers[f"{name}_min"][0]), float(analyzers[f"{name}_max"][0])
    summary[name]["range"] = [low, high] if low <= high else None  # None: no values
  summary["boxes_per_image"]["histogram"] = {
      "boundaries": list(range(1, len(analyzers["boxes_per_image_histogram"]))),
      "counts": [int(v) for v in analyzers["boxes_per_image_histogram"]]}
  return summary


def js_divergence(p_counts: Sequence[float], q_counts: Sequence[float]) -> float:
  """Jensen-Shannon divergence (log base 2, 0 = same, 1 = disjoint) of two histograms."""
  p = np.asarray(p_counts, np.float64)
  q = np.asarray(q_counts, np.float64)
  if p.sum() == 0 or q.sum() == 0:
    return 0.0
  p, q = p / p.sum(), q / q.sum()
  m = (p + q) / 2.0

  def kl(a: np.ndarray) -> float:
    mask = a > 0
    return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

  return 0.5 * kl(p) + 0.5 * kl(q)


def drift_anomalies(train: Mapping[str, Any], val: Mapping[str, Any], class_names: Sequence[str],
                    thresholds: DriftThresholds = DriftThresholds()) -> List[Dict[str, Any]]:
  """Differences between two split summaries worth a look: anomalies, not errors."""
  anomalies = []
  train_counts = np.asarray(train["boxes_per_class"], np.float64)
  val_counts = np.asarray(val["boxes_per_class"], np.float64)
  for index, name in enumerate(class_names):
    if (train_counts[index] > 0) != (val_counts[index] > 0):
      only = "train" if train_counts[index] > 0 else "val"
      anomalies.append({
          "kind": "category_in_one_split", "category": name, "split": only,
          "message": f"category {name!r} has boxes in {only} only "
                     f"({int(max(train_counts[index], val_counts[index]))} boxes)"})
  if train_counts.sum() > 0 and val_counts.sum() > 0:
    gap = np.abs(train_counts / train_counts.sum() - val_counts / val_counts.sum())
    worst = int(np.argmax(gap))
    if gap[worst] > thresholds.class_frequency_linf:
      anomalies.append({
          "kind": "class_frequency_drift", "category": class_names[worst],
          "value": float(gap[worst]), "threshold": thresholds.class_frequency_linf,
          "message": f"class frequencies differ by L-inf {gap[worst]:.3f} > "
                     f"{thresholds.class_frequency_linf} (largest for {class_names[worst]!r}: "
                     f"{train_counts[worst] / train_counts.sum():.3f} of train boxes, "
                     f"{val_counts[worst] / val_counts.sum():.3f} of val boxes)"})
  for measure, threshold, words in (("sqrt_area", thresholds.box_size_js, "box size"),
                                    ("aspect_ratio", thresholds.aspect_ratio_js, "aspect ratio")):
    value = js_divergence(train[measure]["histogram"]["counts"], val[measure]["histogram"]["counts"])
    if value > threshold:
      medians = [s[measure]["quantiles"][QUANTILE_BUCKETS // 2 - 1] for s in (train, val)]
      anomalies.append({
          "kind": f"{measure}_drift", "value": value, "threshold": threshold,
          "message": f"{words} distributions differ: Jensen-Shannon divergence {value:.3f} > "
                     f"{threshold} (median {medians[0]:.3g} in train, {medians[1]:.3g} in val)"})
  return anomalies


def build_report(summaries: Mapping[str, Mapping[str, Any]], sample: np.ndarray,
                 spec: AnalysisSpec, class_names: Sequence[str], min_coverage: float,
                 thresholds: DriftThresholds = DriftThresholds()) -> Dict[str, Any]:
  """The statistics artifact's JSON: splits, anchors, coverage, suggestion, anomalies."""
  train = summaries.get("train")
  coverage = train["coverage"]["positive"] if train else None
  report = {
      "anchors": spec.anchors.layout_json(),
      "matcher": {"positive_iou": spec.positive_iou, "negative_iou": spec.negative_iou},
      "class_names": list(class_names),
      "splits": dict(summaries),
      "coverage": coverage,
      "min_coverage": min_coverage,
      "coverage_ok": coverage is None or coverage >= min_coverage,
      "suggestion": None,
      "anomalies": [],
  }
  suggestion = anchor_fit.suggest_layout(sample, spec.anchors, spec.positive_iou,
                                         spec.negative_iou)
  if suggestion is not None:
    report["suggestion"] = {
        **suggestion.anchors(spec.anchors).layout_json(),
        "sample_boxes": int(len(sample)),
        "coverage_on_sample": suggestion.coverage.to_json(),
        "current_coverage_on_sample": suggestion.current.to_json(),
        "changes_layout": suggestion.coverage != suggestion.current,
    }
  if "train" in summaries and "val" in summaries:
    report["anomalies"] = drift_anomalies(summaries["train"], summaries["val"], class_names,
                                          thresholds)
  return report


def load_sample(output_dir: str) -> np.ndarray:
  path = sample_path(output_dir)
  if not tf.io.gfile.exists(path):
    return np.zeros([0, 4])
  with tf.io.gfile.GFile(path) as f:
    return np.asarray(json.load(f), np.float64).reshape(-1, 4)


def run_statistics(*, file_patterns: Mapping[str, str], spec: AnalysisSpec, output_dir: str,
                   class_names: Sequence[str], min_coverage: float,
                   beam_pipeline: Optional[beam.Pipeline] = None,
                   thresholds: DriftThresholds = DriftThresholds()) -> Dict[str, Any]:
  """Analyzes the Examples, writes `report.json` and the plots, returns the report."""
  from data import stat_plots  # pylint: disable=g-import-not-at-top
  analyze_examples(file_patterns=file_patterns, spec=spec, output_dir=output_dir,
                   beam_pipeline=beam_pipeline)
  analyzers = read_analyzers(transform_dir(output_dir), sorted(file_patterns))
  summaries = {split: split_summary(values) for split, values in analyzers.items()}
  report = build_report(summaries, load_sample(output_dir), spec, class_names, min_coverage,
                        thresholds)
  report["plots"] = stat_plots.write_plots(report, os.path.join(output_dir, "plots"))
  fileio.write_json(os.path.join(output_dir, layout.BOX_STATISTICS_REPORT_FILE), report,
                    allow_nan=True)
  return report
