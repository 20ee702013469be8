"""Data validation of a data span against a schema, with tensorflow-data-validation (TFDV).

The schema is a TFDV `Schema` proto inferred from the first span and curated
the way TFDV users curate one, over features that describe a detection
dataset (derived from the statistics stage's report, so no second pass over
the records):

  category_id      STRING, domain = the label map's category ids; drift: the
                   L-infinity distance between the shares of boxes per category
  image_height/    INT, domain = the first span's range widened by `range_margin`
  image_width
  boxes_per_image  INT, domain as above (from 0)
  box_width/       FLOAT, pixels at the model's input scale, domain as above
  box_height
  box_sqrt_area    FLOAT, as above; drift: Jensen-Shannon divergence of its histogram
  an empty span    dataset_constraints.min_examples_count = 1

`validate` runs `tfdv.validate_statistics` against the schema and its
reference statistics (the span drift is measured from) and names each
anomaly by a kind a user can accept (`ANOMALY_KINDS`). `accept` updates the
schema to allow what was accepted: ranges widened, category ids added, the
reference statistics replaced for drift.
"""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

if TYPE_CHECKING:  # retinanet.coco loads TensorFlow; the CLI checks flags without it
  from retinanet.coco import LabelMap

CATEGORY = "category_id"
IMAGE_HEIGHT, IMAGE_WIDTH = "image_height", "image_width"
BOXES_PER_IMAGE = "boxes_per_image"
BOX_WIDTH, BOX_HEIGHT, BOX_SQRT_AREA = "box_width", "box_height", "box_sqrt_area"
# Schema feature -> (the statistics report's measure, TFDV type, what it is about).
NUMERIC_FEATURES: Dict[str, Tuple[str, str, str]] = {
    IMAGE_HEIGHT: ("image_height", "INT", "image_size"),
    IMAGE_WIDTH: ("image_width", "INT", "image_size"),
    BOXES_PER_IMAGE: ("boxes_per_image", "INT", "boxes_per_image"),
    BOX_WIDTH: ("width", "FLOAT", "box_size"),
    BOX_HEIGHT: ("height", "FLOAT", "box_size"),
    BOX_SQRT_AREA: ("sqrt_area", "FLOAT", "box_size"),
}

# What a user can accept with --accept_anomaly (and what the report calls them).
UNKNOWN_CATEGORY_ID = "unknown_category_id"
IMAGE_SIZE_OUT_OF_RANGE = "image_size_out_of_range"
BOX_SIZE_OUT_OF_RANGE = "box_size_out_of_range"
BOXES_PER_IMAGE_OUT_OF_RANGE = "boxes_per_image_out_of_range"
EMPTY_SPAN = "empty_span"
CLASS_DRIFT = "class_drift"
BOX_SIZE_DRIFT = "box_size_drift"
ANOMALY_KINDS = (UNKNOWN_CATEGORY_ID, IMAGE_SIZE_OUT_OF_RANGE, BOX_SIZE_OUT_OF_RANGE,
                 BOXES_PER_IMAGE_OUT_OF_RANGE, EMPTY_SPAN, CLASS_DRIFT, BOX_SIZE_DRIFT)
# An empty span cannot be trained on, whatever a flag says.
ACCEPTABLE_KINDS = tuple(k for k in ANOMALY_KINDS if k != EMPTY_SPAN)


@dataclasses.dataclass(frozen=True)
class ValidationThresholds:
  """How far a span may move from the schema's reference span before it is an anomaly.

  Measured between sample-data spans of different seeds: class L-inf
  <= 0.05 and box-size JS <= 0.02 for 40 images per span; the defaults leave room for
  that noise and catch a class that disappears or boxes that double in size.
  """
  class_linf: float = 0.15
  box_size_js: float = 0.15
  range_margin: float = 0.5   # inferred ranges: [min / (1 + m), max * (1 + m)]


class ValidationError(ValueError):
  """A schema or statistics file that cannot be used (names the file)."""


@dataclasses.dataclass(frozen=True)
class Anomaly:
  kind: str         # one of ANOMALY_KINDS
  feature: str      # the schema feature ("" for the dataset)
  message: str      # TFDV's description, with our numbers

  def to_json(self) -> Dict[str, str]:
    return dataclasses.asdict(self)


def _merged_splits(report: Mapping[str, Any]) -> Dict[str, Any]:
  """One span's measures over all its splits: counts summed, ranges joined, histograms added."""
  splits = list(report["splits"].values())
  merged: Dict[str, Any] = {
      "num_images": sum(s["num_images"] for s in splits),
      "boxes_per_class": [sum(c) for c in zip(*(s["boxes_per_class"] for s in splits))],
  }
  for _, (measure, _, _) in NUMERIC_FEATURES.items():
    ranges = [s[measure].get("range") for s in splits if s[measure].get("range")]
    merged[measure] = ([min(r[0] for r in ranges), max(r[1] for r in ranges)]
                       if ranges else None)
  histograms = [s["sqrt_area"]["histogram"] for s in splits]
  merged["sqrt_area_histogram"] = {
      "boundaries": histograms[0]["boundaries"],
      "counts": [sum(c) for c in zip(*(h["counts"] for h in histograms))]}
  return merged


def span_statistics(report: Mapping[str, Any], label_map: LabelMap):
  """The span's TFDV statistics (a DatasetFeatureStatisticsList) from the statistics report."""
  from tensorflow_metadata.proto.v0 import statistics_pb2  # pylint: disable=g-import-not-at-top
  merged = _merged_splits(report)
  stats = statistics_pb2.DatasetFeatureStatisticsList()
  dataset = stats.datasets.add(num_examples=merged["num_images"])
  category = dataset.features.add(type=statistics_pb2.FeatureNameStatistics.STRING)
  category.path.step.append(CATEGORY)
  counts = merged["boxes_per_class"]
  category.string_stats.common_stats.num_non_missing = merged["num_images"]
  category.string_stats.unique = sum(1 for c in counts if c)
  for category_id, count in zip(label_map.category_ids, counts):
    if count:
      category.string_stats.rank_histogram.buckets.add(label=str(category_id),
                                                        sample_count=float(count))
  for feature, (measure, kind, _) in NUMERIC_FEATURES.items():
    entry = dataset.features.add(type=getattr(statistics_pb2.FeatureNameStatistics, kind))
    entry.path.step.append(feature)
    entry.num_stats.common_stats.num_non_missing = merged["num_images"]
    if merged[measure] is not None:
      entry.num_stats.min, entry.num_stats.max = merged[measure]
    if feature == BOX_SQRT_AREA:
      _add_histogram(entry.num_stats, merged["sqrt_area_histogram"])
  return stats


def _add_histogram(num_stats, histogram: Mapping[str, Any]) -> None:
  """Fixed-bin counts as a TFDV STANDARD histogram; the open end bins get finite edges
  (half the first boundary, twice the last) since TFDV compares bucket by bucket."""
  from tensorflow_metadata.proto.v0 import statistics_pb2  # pylint: disable=g-import-not-at-top
  bounds = list(histogram["boundaries"])
  edges = [bounds[0] / 2.0, *bounds, bounds[-1] * 2.0]
  out = num_stats.histograms.add(type=statistics_pb2.Histogram.STANDARD)
  for low, high, count in zip(edges[:-1], edges[1:], histogram["counts"]):
    out.buckets.add(low_value=low, high_value=high, sample_count=float(count))


def _feature_stats(stats, feature: str):
  for entry in stats.datasets[0].features:
    if entry.path.step and entry.path.step[0] == feature:
      return entry
  raise KeyError(feature)


def infer_schema(stats, thresholds: ValidationThresholds = ValidationThresholds()):
  """The schema of a first span: TFDV's inference, curated with domains and comparators."""
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  schema = tfdv.infer_schema(stats)
  categories = [b.label for b in
                _feature_stats(stats, CATEGORY).string_stats.rank_histogram.buckets]
  category = tfdv.get_feature(schema, CATEGORY)
  category.ClearField("int_domain")
  category.ClearField("domain")
  category.string_domain.name = CATEGORY
  category.string_domain.value.extend(sorted(categories, key=int))
  category.drift_comparator.infinity_norm.threshold = thresholds.class_linf
  tfdv.get_feature(schema, BOX_SQRT_AREA).drift_comparator.jensen_shannon_divergence.threshold = (
      thresholds.box_size_js)
  for feature, (_, kind, _) in NUMERIC_FEATURES.items():
    num = _feature_stats(stats, feature).num_stats
    low, high = _widened(num.min, num.max, thresholds.range_margin)
    if feature == BOXES_PER_IMAGE:
      low = 0.0
    if kind == "INT":
      tfdv.set_domain(schema, feature, schema_pb2.IntDomain(min=math.floor(low),
                                                            max=math.ceil(high)))
    else:
      tfdv.set_domain(schema, feature, schema_pb2.FloatDomain(min=low, max=high))
  schema.dataset_constraints.min_examples_count = 1
  return schema


def _widened(low: float, high: float, margin: float) -> Tuple[float, float]:
  return low / (1.0 + margin), high * (1.0 + margin)


# TFDV reason type -> our kind, where the feature alone does not say it.
_DRIFT_REASONS = {"COMPARATOR_L_INFTY_HIGH": CLASS_DRIFT,
                  "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH": BOX_SIZE_DRIFT}
_OUT_OF_RANGE = {"image_size": IMAGE_SIZE_OUT_OF_RANGE, "box_size": BOX_SIZE_OUT_OF_RANGE,
                 "boxes_per_image": BOXES_PER_IMAGE_OUT_OF_RANGE}


def _kind(feature: str, reason: str) -> str:
  if reason in _DRIFT_REASONS:
    return _DRIFT_REASONS[reason]
  if feature == CATEGORY:
    return UNKNOWN_CATEGORY_ID
  if feature in NUMERIC_FEATURES:
    return _OUT_OF_RANGE[NUMERIC_FEATURES[feature][2]]
  return reason.lower()


def _range_words(schema, stats, feature: str) -> str:
  """"values 40..900 outside the schema's 60..450" for a numeric feature."""
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  spec = tfdv.get_feature(schema, feature)
  domain = spec.int_domain if spec.HasField("int_domain") else spec.float_domain
  num = _feature_stats(stats, feature).num_stats
  return (f"values {num.min:.4g}..{num.max:.4g}, outside the schema's range "
          f"{domain.min:.4g}..{domain.max:.4g}")


def _category_words(schema, stats) -> str:
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  known = set(tfdv.get_feature(schema, CATEGORY).string_domain.value)
  unknown = [(b.label, int(b.sample_count)) for b in
             _feature_stats(stats, CATEGORY).string_stats.rank_histogram.buckets
             if b.label not in known]
  return ", ".join(f"category id {label} ({count} boxes)" for label, count in unknown) + (
      f" not in the schema's category ids {', '.join(sorted(known, key=int))}")


def validate(stats, schema, reference_stats) -> List[Anomaly]:
  """The span's anomalies against `schema` and the drift reference, one per kind and feature."""
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  from tensorflow_metadata.proto.v0 import anomalies_pb2  # pylint: disable=g-import-not-at-top
  if stats.datasets[0].num_examples == 0:
    return [Anomaly(EMPTY_SPAN, "", "the span has no images")]
  result = tfdv.validate_statistics(stats, schema, previous_statistics=reference_stats)
  anomalies = []
  for feature, info in sorted(result.anomaly_info.items()):
    for reason in info.reason:
      reason_name = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
      kind = _kind(feature, reason_name)
      if kind == UNKNOWN_CATEGORY_ID:
        message = _category_words(schema, stats)
      elif kind in _OUT_OF_RANGE.values():
        message = f"{feature}: {_range_words(schema, stats, feature)}"
      else:
        message = f"{feature}: {reason.description}"
      anomalies.append(Anomaly(kind, feature, message))
  if result.HasField("data_missing") and result.data_missing:
    anomalies.append(Anomaly(EMPTY_SPAN, "", "the span has no data"))
  unique = {(a.kind, a.feature): a for a in anomalies}
  return [unique[key] for key in sorted(unique)]


def accept(schema, stats, anomalies: Sequence[Anomaly], thresholds: ValidationThresholds
           = ValidationThresholds()):
  """(the schema updated to allow the accepted anomalies, whether the drift reference moves
  to this span). Ranges are widened as inference widens them, unknown category ids added."""
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  updated = type(schema)()
  updated.CopyFrom(schema)
  move_reference = False
  for anomaly in anomalies:
    if anomaly.kind == UNKNOWN_CATEGORY_ID:
      domain = tfdv.get_feature(updated, CATEGORY).string_domain
      labels = [b.label for b in
                _feature_stats(stats, CATEGORY).string_stats.rank_histogram.buckets]
      values = sorted(set(domain.value) | set(labels), key=int)
      del domain.value[:]
      domain.value.extend(values)
    elif anomaly.kind in _OUT_OF_RANGE.values():
      spec = tfdv.get_feature(updated, anomaly.feature)
      num = _feature_stats(stats, anomaly.feature).num_stats
      low, high = _widened(num.min, num.max, thresholds.range_margin)
      if spec.HasField("int_domain"):
        spec.int_domain.min = min(spec.int_domain.min, math.floor(low))
        spec.int_domain.max = max(spec.int_domain.max, math.ceil(high))
      else:
        spec.float_domain.min = min(spec.float_domain.min, low)
        spec.float_domain.max = max(spec.float_domain.max, high)
    elif anomaly.kind in (CLASS_DRIFT, BOX_SIZE_DRIFT):
      move_reference = True
  return updated, move_reference


def check_accept_list(names: Sequence[str]) -> List[str]:
  """The --accept_anomaly values, checked: each must be an acceptable kind."""
  unknown = [n for n in names if n not in ACCEPTABLE_KINDS]
  if unknown:
    raise ValueError(f"--accept_anomaly {', '.join(unknown)}: not an anomaly that can be "
                     f"accepted (one of {', '.join(ACCEPTABLE_KINDS)})")
  return list(dict.fromkeys(names))


def split_accepted(anomalies: Sequence[Anomaly], accepted: Sequence[str]
                   ) -> Tuple[List[Anomaly], List[Anomaly]]:
  """(accepted, blocking) anomalies."""
  return ([a for a in anomalies if a.kind in accepted],
          [a for a in anomalies if a.kind not in accepted])


def kinds_text(anomalies: Sequence[Anomaly]) -> str:
  """The anomalies' kinds, sorted and comma-separated (as MLMD records them)."""
  return ",".join(sorted({a.kind for a in anomalies}))


def report_lines(span: int, anomalies: Sequence[Anomaly], accepted: Sequence[Anomaly]
                 ) -> List[str]:
  """The console report of a validation: one line per anomaly."""
  if not anomalies:
    return [f"Data validation: span {span} matches the schema"]
  lines = []
  for a in anomalies:
    state = "accepted" if a in accepted else "BLOCKS TRAINING"
    lines.append(f"Data validation: span {span}: {a.kind} ({state}): {a.message}")
  return lines


# --- Files: the schema as TFX writes it (schema.pbtxt), the reference statistics beside it.
SCHEMA_FILE = "schema.pbtxt"
REFERENCE_STATISTICS_FILE = "reference_statistics.pbtxt"
ANOMALIES_FILE = "anomalies.json"


def write_text_proto(path: str, message) -> None:
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from retinanet import fileio  # pylint: disable=g-import-not-at-top
  fileio.write_text(path, text_format.MessageToString(message))


def read_schema(path: str):
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  return _read_text_proto(path, schema_pb2.Schema())


def read_statistics(path: str):
  from tensorflow_metadata.proto.v0 import statistics_pb2  # pylint: disable=g-import-not-at-top
  return _read_text_proto(path, statistics_pb2.DatasetFeatureStatisticsList())


def _read_text_proto(path: str, message):
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from retinanet import fileio  # pylint: disable=g-import-not-at-top
  try:
    return text_format.Parse(fileio.read_bytes(path).decode("utf-8"), message)
  except (OSError, text_format.ParseError) as e:
    raise ValidationError(f"{path}: cannot read {type(message).__name__}: {e}") from e


def anomalies_json(span: int, anomalies: Sequence[Anomaly], accepted: Sequence[Anomaly],
                   schema_span: int) -> Dict[str, Any]:
  return {"span": span, "schema_span": schema_span,
          "anomalies": [a.to_json() for a in anomalies],
          "accepted": [a.kind for a in accepted],
          "blocking": [a.to_json() for a in anomalies if a not in accepted]}


def blocking_message(payload: Mapping[str, Any], path: Optional[str] = None) -> str:
  """Why training is refused, from an anomalies.json payload (empty when it is not)."""
  blocking = payload.get("blocking") or []
  if not blocking:
    return ""
  where = f" (report: {path})" if path else ""
  kinds = sorted({a["kind"] for a in blocking})
  details = "; ".join(a["message"] for a in blocking)
  acceptable = [k for k in kinds if k in ACCEPTABLE_KINDS]
  hint = (f"fix the span, or accept with --accept_anomaly={acceptable[0]} if it is intended"
          if acceptable else "an empty span cannot be trained on: fix or remove it")
  return (f"data validation of span {payload['span']} found {', '.join(kinds)}: {details}. "
          f"Training refused{where}; {hint}")
