"""Data validation with TFDV on hand-built statistics reports: the inferred schema, each
anomaly kind named with its numbers, accepting one, and the files round-trip."""
import pytest

from data import box_statistics as bs
from data import validation as v
from retinanet.coco import LabelMap

LABELS = LabelMap((3, 7, 12), ("circle", "square", "triangle"))
# Histogram bins of the statistics stage, so the drift measures see what they see in a run.
BINS = len(bs.SIZE_BOUNDARIES) + 1


def _split(num_images=40, per_class=(30, 30, 30), image=(200, 320), boxes_per_image=(0, 6),
           box=(10, 90), sizes_bin=10):
  """One split summary with the keys validation reads; box sizes all in bin `sizes_bin`."""
  counts = [0] * BINS
  counts[sizes_bin] = sum(per_class)
  summary = {"num_images": num_images, "boxes_per_class": list(per_class),
             "sqrt_area": {"range": list(box),
                           "histogram": {"boundaries": list(bs.SIZE_BOUNDARIES),
                                         "counts": counts}},
             "boxes_per_image": {"range": list(boxes_per_image)},
             "image_height": {"range": list(image)}, "image_width": {"range": list(image)}}
  summary["width"] = {"range": list(box)}
  summary["height"] = {"range": list(box)}
  return summary


def _report(**train):
  return {"splits": {"train": _split(**train), "val": _split(num_images=10)}}


@pytest.fixture(scope="module")
def schema_and_reference():
  reference = v.span_statistics(_report(), LABELS)
  return v.infer_schema(reference), reference


def _validate(schema_and_reference, report, labels=LABELS):
  schema, reference = schema_and_reference
  return v.validate(v.span_statistics(report, labels), schema, reference)


def test_inferred_schema_has_the_category_ids_and_widened_ranges(schema_and_reference):
  import tensorflow_data_validation as tfdv
  schema, _ = schema_and_reference
  assert list(tfdv.get_feature(schema, v.CATEGORY).string_domain.value) == ["3", "7", "12"]
  height = tfdv.get_feature(schema, v.IMAGE_HEIGHT).int_domain
  assert (height.min, height.max) == (133, 480)  # 200 / 1.5 (floor), 320 * 1.5
  assert tfdv.get_feature(schema, v.BOXES_PER_IMAGE).int_domain.min == 0
  box = tfdv.get_feature(schema, v.BOX_SQRT_AREA).float_domain
  assert (box.min, box.max) == pytest.approx((10 / 1.5, 135))
  assert schema.dataset_constraints.min_examples_count == 1


def test_a_span_like_the_first_has_no_anomaly(schema_and_reference):
  assert _validate(schema_and_reference, _report(per_class=(28, 33, 29), image=(210, 300))) == []


def test_an_unknown_category_id_is_named_with_its_box_count(schema_and_reference):
  labels = LabelMap((3, 7, 12, 99), ("circle", "square", "triangle", "ufo"))
  report = {"splits": {"train": _split(per_class=(30, 30, 30, 5)),
                       "val": {**_split(num_images=10), "boxes_per_class": [30, 30, 30, 0]}}}
  [anomaly] = _validate(schema_and_reference, report, labels)
  assert anomaly.kind == v.UNKNOWN_CATEGORY_ID
  assert "category id 99 (5 boxes)" in anomaly.message and "3, 7, 12" in anomaly.message


def test_out_of_range_sizes_are_named_with_the_numbers(schema_and_reference):
  anomalies = _validate(schema_and_reference, _report(image=(90, 320), box=(10, 200),
                                                      boxes_per_image=(0, 20)))
  kinds = {(a.kind, a.feature) for a in anomalies}
  assert {(v.IMAGE_SIZE_OUT_OF_RANGE, v.IMAGE_HEIGHT), (v.IMAGE_SIZE_OUT_OF_RANGE, v.IMAGE_WIDTH),
          (v.BOX_SIZE_OUT_OF_RANGE, v.BOX_SQRT_AREA),
          (v.BOXES_PER_IMAGE_OUT_OF_RANGE, v.BOXES_PER_IMAGE)} <= kinds
  [height] = [a for a in anomalies if a.feature == v.IMAGE_HEIGHT]
  assert "values 90..320" in height.message and "133..480" in height.message


def test_class_and_box_size_drift(schema_and_reference):
  # One class gone: its share drops from 1/3 to 0 (L-inf 1/3 > 0.15).
  [drift] = _validate(schema_and_reference, _report(per_class=(45, 45, 0)))
  assert drift.kind == v.CLASS_DRIFT and "Linfty" in drift.message
  # All boxes in a bin twice as far (sizes doubled): disjoint histograms, JS 1.
  kinds = [a.kind for a in _validate(schema_and_reference, _report(sizes_bin=12))]
  assert kinds == [v.BOX_SIZE_DRIFT]


def test_an_empty_span(schema_and_reference):
  empty = {"splits": {"train": _split(num_images=0, per_class=(0, 0, 0), image=(0, 0)),
                      "val": _split(num_images=0, per_class=(0, 0, 0))}}
  assert [a.kind for a in _validate(schema_and_reference, empty)] == [v.EMPTY_SPAN]


def test_accepting_updates_the_schema_so_the_span_then_passes(schema_and_reference):
  schema, reference = schema_and_reference
  labels = LabelMap((3, 7, 12, 99), ("circle", "square", "triangle", "ufo"))
  report = {"splits": {"train": _split(per_class=(30, 30, 30, 5), image=(90, 320)),
                       "val": {**_split(num_images=10), "boxes_per_class": [30, 30, 30, 0]}}}
  stats = v.span_statistics(report, labels)
  anomalies = v.validate(stats, schema, reference)
  accepted, blocking = v.split_accepted(anomalies, [v.UNKNOWN_CATEGORY_ID])
  assert [a.kind for a in blocking] == [v.IMAGE_SIZE_OUT_OF_RANGE] * 2
  updated, move_reference = v.accept(schema, stats, anomalies)
  assert not move_reference and v.validate(stats, updated, reference) == []
  # The original schema is untouched.
  assert [a.kind for a in v.validate(stats, schema, reference)] == [a.kind for a in anomalies]


def test_accept_list_refuses_unknown_names_and_an_empty_span():
  assert v.check_accept_list(["class_drift", "class_drift"]) == ["class_drift"]
  for bad in ("empty_span", "classdrift"):
    with pytest.raises(ValueError, match=bad):
      v.check_accept_list([bad])


def test_files_round_trip_and_the_refusal_names_span_kind_and_numbers(schema_and_reference,
                                                                     tmp_path):
  schema, reference = schema_and_reference
  v.write_text_proto(str(tmp_path / v.SCHEMA_FILE), schema)
  v.write_text_proto(str(tmp_path / "stats.pbtxt"), reference)
  assert v.read_schema(str(tmp_path / v.SCHEMA_FILE)) == schema
  assert v.read_statistics(str(tmp_path / "stats.pbtxt")) == reference
  (tmp_path / "bad.pbtxt").write_text("feature {")
  with pytest.raises(v.ValidationError, match="bad.pbtxt"):
    v.read_schema(str(tmp_path / "bad.pbtxt"))
  anomaly = v.Anomaly(v.UNKNOWN_CATEGORY_ID, v.CATEGORY, "category id 99 (5 boxes) not in ...")
  payload = v.anomalies_json(3, [anomaly], [], schema_span=1)
  message = v.blocking_message(payload, "/x/anomalies.json")
  assert "span 3" in message and "unknown_category_id" in message and "99 (5 boxes)" in message
  assert v.blocking_message(v.anomalies_json(3, [anomaly], [anomaly], 1)) == ""
  empty = v.blocking_message(v.anomalies_json(4, [v.Anomaly(v.EMPTY_SPAN, "", "no images")], [],
                                              schema_span=1))
  assert "empty_span" in empty and "--accept_anomaly" not in empty
