"""Box conversion, class mapping, ground-truth building and metrics I/O of retinanet.evaluation."""
import json
import math

import numpy as np
import pytest

from retinanet.evaluation import coco_metrics as cm


def test_yxyx_to_coco_xywh_hand_example():
  boxes = np.array([[10.0, 20.0, 50.0, 30.0], [0.0, 0.0, 1.5, 2.5]])
  np.testing.assert_array_equal(cm.boxes_yxyx_to_coco_xywh(boxes),
                                [[20.0, 10.0, 10.0, 40.0], [0.0, 0.0, 2.5, 1.5]])


def test_box_conversion_round_trip_keeps_batch_shape():
  rng = np.random.default_rng(0)
  mins = rng.uniform(0, 100, size=(3, 5, 2))
  boxes = np.concatenate([mins, mins + rng.uniform(1, 50, size=(3, 5, 2))], axis=-1)
  xywh = cm.boxes_yxyx_to_coco_xywh(boxes)
  assert xywh.shape == (3, 5, 4)
  np.testing.assert_allclose(cm.coco_xywh_to_boxes_yxyx(xywh), boxes, rtol=0, atol=1e-12)


def test_box_conversion_rejects_wrong_last_dimension():
  with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
    cm.boxes_yxyx_to_coco_xywh(np.zeros((2, 3)))


def test_boxes_to_original_pixels_divides_by_scale_and_clips():
  # Image 0: 200x100 (h, w) resized by 0.5; image 1: 50x80 resized by (2, 4).
  boxes = np.array([[[10.0, 20.0, 60.0, 70.0], [90.0, 40.0, 120.0, 60.0]],
                    [[20.0, 40.0, 60.0, 400.0], [-4.0, 0.0, 8.0, 8.0]]])
  out = cm.boxes_to_original_pixels(boxes, scales=np.array([[0.5, 0.5], [2.0, 4.0]]),
                                    original_sizes=[[200, 100], [50, 80]])
  np.testing.assert_allclose(out, [[[20.0, 40.0, 120.0, 100.0], [180.0, 80.0, 200.0, 100.0]],
                                   [[10.0, 10.0, 30.0, 80.0], [0.0, 0.0, 4.0, 2.0]]])
  scalar = cm.boxes_to_original_pixels(boxes[:1], scales=[0.5], original_sizes=[[200, 100]])
  np.testing.assert_allclose(scalar, out[:1])
  with pytest.raises(ValueError, match="scales must be positive"):
    cm.boxes_to_original_pixels(boxes[:1], scales=[0.0], original_sizes=[[200, 100]])


def test_class_to_category_array_accepts_dict_json_keys_and_arrays():
  expected = [1, 7, 90]
  assert cm.class_to_category_array({0: 1, 1: 7, 2: 90}).tolist() == expected
  assert cm.class_to_category_array({"2": 90, "0": 1, "1": 7}).tolist() == expected
  assert cm.class_to_category_array(np.array(expected, np.int32)).tolist() == expected
  assert cm.class_to_category_array(expected).dtype == np.int64


@pytest.mark.parametrize("mapping, message", [
    ({0: 1, 2: 3}, "contiguous class indices"),
    ({0: 1, 1: 1}, "several classes to category id 1"),
    ([], "empty"),
    ([[1, 2]], "1-D"),
    ([1.5, 2.0], "integer category ids"),
])
def test_class_to_category_array_rejects_bad_mappings(mapping, message):
  with pytest.raises(ValueError, match=message):
    cm.class_to_category_array(mapping)


def test_build_coco_ground_truth_from_arrays():
  gt = cm.build_coco_ground_truth(
      image_ids=[5, 9], image_sizes=[[100, 200], [30, 40]],
      boxes_yxyx=[np.array([[10.0, 20.0, 50.0, 30.0], [0.0, 0.0, 10.0, 10.0]]), np.zeros((0, 4))],
      category_ids=[np.array([3, 1]), np.zeros((0,), np.int64)],
      category_names={1: "person", 3: "car", 4: "truck"},
      is_crowd=[np.array([0, 1]), np.zeros((0,))],
      areas=None)
  assert gt["images"] == [{"id": 5, "height": 100, "width": 200},
                          {"id": 9, "height": 30, "width": 40}]
  assert gt["categories"] == [{"id": 1, "name": "person"}, {"id": 3, "name": "car"},
                              {"id": 4, "name": "truck"}]
  assert gt["annotations"] == [
      {"id": 1, "image_id": 5, "category_id": 3, "bbox": [20.0, 10.0, 10.0, 40.0],
       "area": 400.0, "iscrowd": 0},
      {"id": 2, "image_id": 5, "category_id": 1, "bbox": [0.0, 0.0, 10.0, 10.0],
       "area": 100.0, "iscrowd": 1},
  ]
  cm.validate_coco_ground_truth(gt)
  with_areas = cm.build_coco_ground_truth(
      [5], [[100, 200]], [np.array([[0.0, 0.0, 10.0, 10.0]])], [np.array([1])], {1: "person"},
      areas=[np.array([37.5])])
  assert with_areas["annotations"][0]["area"] == 37.5


def test_build_coco_ground_truth_rejects_unknown_category_and_repeated_image():
  with pytest.raises(ValueError, match="image_id 5: ground-truth category id 2"):
    cm.build_coco_ground_truth([5], [[10, 10]], [np.array([[0.0, 0.0, 1.0, 1.0]])],
                               [np.array([2])], {1: "person"})
  with pytest.raises(ValueError, match="image_ids repeats id 5"):
    cm.build_coco_ground_truth([5, 5], [[10, 10], [10, 10]], [np.zeros((0, 4))] * 2,
                               [np.zeros(0)] * 2, {1: "person"})


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("categories"), 'missing the top-level "categories"'),
    (lambda d: d["annotations"][0].pop("iscrowd"), r'annotation 0 \(id 1\) has no "iscrowd"'),
    (lambda d: d["annotations"][0].update(id=0), "unique integers >= 1"),
    (lambda d: d["annotations"].append(dict(d["annotations"][0])), "unique integers >= 1"),
    (lambda d: d["annotations"][0].update(image_id=77), 'image_id 77 is not in "images"'),
    (lambda d: d["annotations"][0].update(category_id=5), 'category_id 5 is not in "categories"'),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), '"bbox" must be'),
])
def test_validate_coco_ground_truth_names_record_and_field(mutate, message):
  dataset = {"images": [{"id": 1, "height": 10, "width": 10}],
             "categories": [{"id": 1, "name": "a"}],
             "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5],
                              "area": 25, "iscrowd": 0}]}
  cm.validate_coco_ground_truth(dataset, source="gt.json")
  mutate(dataset)
  with pytest.raises(ValueError, match=f"gt.json.*{message}"):
    cm.validate_coco_ground_truth(dataset, source="gt.json")


def test_load_coco_ground_truth_reports_bad_json(tmp_path):
  path = tmp_path / "broken.json"
  path.write_text("{not json")
  with pytest.raises(ValueError, match="broken.json: invalid JSON"):
    cm.load_coco_ground_truth(str(path))


def test_metrics_json_round_trip_maps_nan_and_numpy(tmp_path):
  metrics = {"AP": np.float64(0.25), "AP50": 0.5, "count": np.int64(3), "undefined": float("nan"),
             "per_class": [{"category_id": 7, "name": "x", "AP": None}], "ids": np.array([1, 2])}
  path = str(tmp_path / "sub" / "metrics.json")
  cm.write_metrics_json(path, metrics)
  loaded = cm.read_metrics_json(path)
  assert loaded == {"AP": 0.25, "AP50": 0.5, "count": 3, "undefined": None,
                    "per_class": [{"category_id": 7, "name": "x", "AP": None}], "ids": [1, 2]}
  json.loads((tmp_path / "sub" / "metrics.json").read_text())  # strict JSON: no NaN tokens
  assert "NaN" not in (tmp_path / "sub" / "metrics.json").read_text()


def test_read_metrics_json_rejects_non_object(tmp_path):
  path = tmp_path / "m.json"
  path.write_text("[1, 2]")
  with pytest.raises(ValueError, match="expected a JSON object"):
    cm.read_metrics_json(str(path))


def test_scalar_metrics_skips_undefined_classes():
  result = {name: float(i) / 12 for i, name in enumerate(cm.COCO_METRIC_NAMES)}
  result["per_class"] = [{"category_id": 1, "name": "a", "AP": 0.5},
                         {"category_id": 2, "name": "b", "AP": None}]
  scalars = cm.scalar_metrics(result)
  assert scalars["AP_per_class/a"] == 0.5
  assert "AP_per_class/b" not in scalars
  assert len(scalars) == 13 and not any(math.isnan(v) for v in scalars.values())
