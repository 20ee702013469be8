"""COCOEvaluator against pycocotools called directly, and on hand-computed cases."""
import contextlib
import io
import json
import logging

import numpy as np
import pytest
import tensorflow as tf
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from retinanet.evaluation import coco_metrics as cm

# Contiguous class c <-> sparse original category id, as in COCO (ids 1..90).
CATEGORY_IDS = [1, 7, 90, 55]
# pycocotools' precision is tp / (tp + fp + eps): a perfect 1/1 gives 1 - 2.2e-16.
ONE = pytest.approx(1.0, abs=1e-12)
CATEGORIES = [{"id": 1, "name": "person"}, {"id": 7, "name": "train"},
              {"id": 90, "name": "toothbrush"}, {"id": 55, "name": "orange"}]


def _ann(ann_id, image_id, category_id, xywh, iscrowd=0):
  return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": list(xywh),
          "area": float(xywh[2] * xywh[3]), "iscrowd": iscrowd}


def _dataset(images, annotations, categories=CATEGORIES):
  return {"images": [{"id": i, "height": h, "width": w} for i, h, w in images],
          "annotations": annotations, "categories": categories}


def _write_json(tmp_path, name, obj):
  path = tmp_path / name
  path.write_text(json.dumps(obj))
  return str(path)


def _pad_batch(image_ids, per_image):
  """per_image: list of [(yxyx box, score, class)] -> the post-processor's padded arrays."""
  slots = max(1, max(len(d) for d in per_image))
  boxes = np.full((len(image_ids), slots, 4), 7.0, np.float32)  # padding must be ignored
  scores = np.full((len(image_ids), slots), 0.99, np.float32)
  classes = np.full((len(image_ids), slots), 3, np.int32)
  for b, dets in enumerate(per_image):
    for k, (box, score, cls) in enumerate(dets):
      boxes[b, k], scores[b, k], classes[b, k] = box, score, cls
  valid = np.array([len(d) for d in per_image], np.int32)
  return np.array(image_ids), boxes, scores, classes, valid


def _yxyx(xywh):
  x, y, w, h = xywh
  return [y, x, y + h, x + w]


def _direct_cocoeval(gt_path, results_path, cat_ids=None):
  """pycocotools exactly as its README calls it."""
  with contextlib.redirect_stdout(io.StringIO()):
    coco_gt = COCO(gt_path)
    coco_dt = coco_gt.loadRes(results_path)
    coco_eval = COCOeval(coco_gt, coco_dt, "bbox")
    if cat_ids is not None:
      coco_eval.params.catIds = cat_ids
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
  return coco_eval


@pytest.fixture(scope="module")
def varied():
  """Six images, small/medium/large objects, crowds, a class without ground truth
  (55) and one with only a crowd region (90); detections jittered, missed,
  misclassified and spurious. Integer GT boxes so arrays <-> JSON is exact."""
  rng = np.random.default_rng(1234)
  images, annotations, per_image = [], [], []
  for image_id in (3, 11, 12, 40, 41, 97):
    height, width = int(rng.integers(200, 400)), int(rng.integers(200, 400))
    images.append((image_id, height, width))
    dets = []
    for _ in range(int(rng.integers(1, 6))):
      side = int(rng.choice([12, 20, 45, 70, 130]))
      x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
      cls = int(rng.integers(0, 2))
      annotations.append(_ann(len(annotations) + 1, image_id, CATEGORY_IDS[cls], (x, y, side, side)))
      if rng.uniform() < 0.8:
        jitter = rng.normal(0, 0.06 * side, size=4)
        box = np.array(_yxyx((x, y, side, side))) + jitter
        wrong = rng.uniform() < 0.15
        dets.append((box, float(rng.uniform(0.05, 1.0)), (cls + 1) % 4 if wrong else cls))
    for _ in range(int(rng.integers(0, 4))):
      y, x = rng.uniform(0, height - 30), rng.uniform(0, width - 30)
      dets.append(([y, x, y + rng.uniform(5, 30), x + rng.uniform(5, 30)],
                   float(rng.uniform(0.05, 1.0)), int(rng.integers(0, 4))))
    per_image.append(dets)
  # A crowd region of class 90 holding two detections, and a plain crowd of persons.
  annotations.append(_ann(len(annotations) + 1, 40, 90, (10, 10, 150, 150), iscrowd=1))
  per_image[3] += [(_yxyx((20, 20, 40, 40)), 0.97, 2), (_yxyx((60, 80, 30, 50)), 0.5, 2)]
  annotations.append(_ann(len(annotations) + 1, 97, 1, (0, 0, 120, 100), iscrowd=1))
  per_image[5] += [(_yxyx((5, 5, 50, 50)), 0.9, 0)]
  return {"dataset": _dataset(images, annotations), "per_image": per_image,
          "image_ids": [i for i, _, _ in images]}


def _evaluate_in_two_batches(evaluator, varied):
  ids, per_image = varied["image_ids"], varied["per_image"]
  evaluator.update(*_pad_batch(ids[:4], per_image[:4]))
  evaluator.update(*_pad_batch(ids[4:], per_image[4:]))
  return evaluator.evaluate()


@pytest.mark.parametrize("backend", cm.BACKENDS)
def test_equals_pycocotools_called_directly(tmp_path, varied, backend):
  gt_path = _write_json(tmp_path, "gt.json", varied["dataset"])
  evaluator = cm.COCOEvaluator.from_annotations_file(gt_path, CATEGORY_IDS, backend=backend)
  result = _evaluate_in_two_batches(evaluator, varied)
  results_path = str(tmp_path / "detections.json")
  cm.write_detections_json(results_path, result["detections"])
  reference = _direct_cocoeval(gt_path, results_path)
  ours = np.array([result[name] for name in cm.COCO_METRIC_NAMES])
  # pycocotools exactly; faster_coco_eval sums in another order (float rounding, ~1e-16).
  np.testing.assert_allclose(ours, reference.stats, rtol=0, atol=0 if backend == "pycocotools"
                             else 1e-12)
  assert 0.1 < result["AP"] < 0.9  # a case where every part of the curve matters
  assert result["num_images"] == 6
  assert result["num_detections"] == sum(len(d) for d in varied["per_image"])


@pytest.mark.parametrize("backend", cm.BACKENDS)
def test_per_class_ap_equals_cocoeval_restricted_to_that_category(tmp_path, varied, backend):
  gt_path = _write_json(tmp_path, "gt.json", varied["dataset"])
  result = _evaluate_in_two_batches(
      cm.COCOEvaluator.from_annotations_file(gt_path, CATEGORY_IDS, backend=backend), varied)
  results_path = str(tmp_path / "detections.json")
  cm.write_detections_json(results_path, result["detections"])
  by_id = {entry["category_id"]: entry for entry in result["per_class"]}
  assert sorted(by_id) == sorted(CATEGORY_IDS)
  for category in CATEGORIES:
    entry = by_id[category["id"]]
    assert entry["name"] == category["name"]
    reference = _direct_cocoeval(gt_path, results_path, cat_ids=[category["id"]]).stats[0]
    if reference == -1:
      assert entry["AP"] is None and entry["num_ground_truth"] == 0
    else:
      assert entry["AP"] == pytest.approx(reference, rel=1e-12, abs=1e-12)
      assert entry["num_ground_truth"] > 0
  # 55 has no ground truth at all, 90 only a crowd region: undefined, not 0.
  assert by_id[55]["AP"] is None and by_id[90]["AP"] is None
  assert by_id[1]["AP"] is not None and by_id[7]["AP"] is not None


def test_accumulated_ground_truth_equals_the_json(tmp_path, varied):
  """The TFRecord path: ground truth arrives with the eval batches (original ids, is_crowd, area)."""
  gt_path = _write_json(tmp_path, "gt.json", varied["dataset"])
  from_json = _evaluate_in_two_batches(cm.COCOEvaluator.from_annotations_file(gt_path, CATEGORY_IDS),
                                       varied)
  dataset = varied["dataset"]
  evaluator = cm.COCOEvaluator(CATEGORY_IDS, category_names={c["id"]: c["name"] for c in CATEGORIES})
  assert evaluator.accumulates_ground_truth
  sizes = {image["id"]: (image["height"], image["width"]) for image in dataset["images"]}
  for batch_ids in (varied["image_ids"][:4], varied["image_ids"][4:]):
    anns = [[a for a in dataset["annotations"] if a["image_id"] == i] for i in batch_ids]
    slots = max(len(a) for a in anns) + 2  # extra padding rows
    boxes = np.full((len(batch_ids), slots, 4), -1.0, np.float32)
    cats = np.full((len(batch_ids), slots), -1, np.int64)
    crowd = np.zeros((len(batch_ids), slots), np.int64)
    area = np.zeros((len(batch_ids), slots), np.float32)
    for b, image_anns in enumerate(anns):
      for k, a in enumerate(image_anns):
        boxes[b, k] = _yxyx(a["bbox"])
        cats[b, k], crowd[b, k], area[b, k] = a["category_id"], a["iscrowd"], a["area"]
    evaluator.add_ground_truth(np.array(batch_ids), [sizes[i] for i in batch_ids], boxes, cats,
                               num_boxes=[len(a) for a in anns], is_crowd=crowd, areas=area)
  ids, per_image = varied["image_ids"], varied["per_image"]
  evaluator.update(*_pad_batch(ids[:4], per_image[:4]))
  evaluator.update(*_pad_batch(ids[4:], per_image[4:]))
  accumulated = evaluator.evaluate()
  for name in cm.COCO_METRIC_NAMES:
    assert accumulated[name] == from_json[name], name
  assert accumulated["per_class"] == from_json["per_class"]
  assert accumulated["detections"] == from_json["detections"]


def test_perfect_detections_give_ap_one(tmp_path, varied):
  dataset = varied["dataset"]
  evaluator = cm.COCOEvaluator(CATEGORY_IDS, ground_truth=dataset)
  for image_id in varied["image_ids"]:
    dets = [(_yxyx(a["bbox"]), 0.9, CATEGORY_IDS.index(a["category_id"]))
            for a in dataset["annotations"] if a["image_id"] == image_id and not a["iscrowd"]]
    evaluator.update(*_pad_batch([image_id], [dets]))
  result = evaluator.evaluate()
  for name in ("AP", "AP50", "AP75", "ARmax100"):
    assert result[name] == ONE, name
  for name in ("APs", "APm", "APl", "ARs", "ARm", "ARl"):
    assert result[name] == cm.COCO_NO_GROUND_TRUTH or result[name] == ONE, name
  assert [e["AP"] for e in result["per_class"] if e["num_ground_truth"]] == [ONE, ONE]


def test_shifted_box_hand_computed():
  # GT 10x10 at (10, 10); the detection is shifted 2.4 px right:
  # IoU = (7.6 * 10) / (200 - 76) = 0.6129 -> a match at IoU 0.50, 0.55, 0.60 only,
  # so AP@[.50:.95] = 3 / 10, AP50 = 1, AP75 = 0, the recall likewise.
  dataset = _dataset([(1, 100, 100)], [_ann(1, 1, 7, (10, 10, 10, 10))])
  evaluator = cm.COCOEvaluator(CATEGORY_IDS, ground_truth=dataset)
  evaluator.update(*_pad_batch([1], [[([10.0, 12.4, 20.0, 22.4], 0.8, 1)]]))
  result = evaluator.evaluate()
  expected = {"AP": 0.3, "AP50": 1.0, "AP75": 0.0, "APs": 0.3, "APm": -1.0, "APl": -1.0,
              "ARmax1": 0.3, "ARmax10": 0.3, "ARmax100": 0.3, "ARs": 0.3, "ARm": -1.0, "ARl": -1.0}
  assert {name: result[name] for name in cm.COCO_METRIC_NAMES} == pytest.approx(expected, abs=1e-12)
  lines = result["summary"].splitlines()
  assert len(lines) == 12
  assert lines[0] == (" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"
                      " = 0.300")
  assert lines[11] == (" Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]"
                       " = -1.000")


@pytest.mark.parametrize("scores, expected_ap", [
    # Ranked FP, TP, TP: precision 0, 1/2, 2/3 at recall 0, 1/2, 1 -> interpolated 2/3 everywhere.
    ((0.9, 0.8, 0.7), 2.0 / 3.0),
    # Ranked TP, FP, TP: precision 1 up to recall 1/2 (51 of COCO's 101 recall points), then 2/3.
    ((0.8, 0.9, 0.7), (51 * 1.0 + 50 * 2.0 / 3.0) / 101),
])
def test_precision_curve_hand_computed(scores, expected_ap):
  gt_a, gt_b = (10, 10, 40, 40), (100, 100, 40, 40)
  dataset = _dataset([(1, 200, 200)], [_ann(1, 1, 1, gt_a), _ann(2, 1, 1, gt_b)])
  evaluator = cm.COCOEvaluator(CATEGORY_IDS, ground_truth=dataset)
  spurious = [150.0, 10.0, 190.0, 50.0]
  evaluator.update(*_pad_batch([1], [[(spurious, scores[0], 0), (_yxyx(gt_a), scores[1], 0),
                                      (_yxyx(gt_b), scores[2], 0)]]))
  result = evaluator.evaluate()
  assert result["AP"] == pytest.approx(expected_ap, abs=1e-12)
  assert result["AP50"] == pytest.approx(expected_ap, abs=1e-12)
  assert result["ARmax100"] == ONE


def _crowd_case(with_crowd):
  person = (10, 10, 30, 30)
  annotations = [_ann(1, 1, 1, person)]
  if with_crowd:
    annotations.append(_ann(2, 1, 1, (100, 100, 80, 80), iscrowd=1))
  # The higher-scored detection lies inside the crowd region.
  detections = [(_yxyx((110, 110, 20, 20)), 0.95, 0), (_yxyx(person), 0.9, 0)]
  return _dataset([(1, 200, 200)], annotations), detections


def test_detection_on_crowd_region_is_not_a_false_positive():
  dataset, detections = _crowd_case(with_crowd=True)
  evaluator = cm.COCOEvaluator(CATEGORY_IDS, ground_truth=dataset)
  evaluator.update(*_pad_batch([1], [detections]))
  result = evaluator.evaluate()
  assert result["AP"] == ONE
  assert {e["category_id"]: e["num_ground_truth"] for e in result["per_class"]}[1] == 1
  # Without the crowd annotation the same detection is a top-ranked false
  # positive: precision 1/2 at recall 1 -> AP 0.5.
  dataset, detections = _crowd_case(with_crowd=False)
  evaluator = cm.COCOEvaluator(CATEGORY_IDS, ground_truth=dataset)
  evaluator.update(*_pad_batch([1], [detections]))
  assert evaluator.evaluate()["AP"] == pytest.approx(0.5, abs=1e-12)


def test_crowd_flag_from_accumulated_ground_truth():
  dataset, detections = _crowd_case(with_crowd=True)
  evaluator = cm.COCOEvaluator(CATEGORY_IDS)
  boxes = np.array([[_yxyx(a["bbox"]) for a in dataset["annotations"]]])
  evaluator.add_ground_truth([1], [[200, 200]], boxes, [[1, 1]], num_boxes=[2],
                             is_crowd=[[0, 1]], areas=None)
  evaluator.update(*_pad_batch([1], [detections]))
  assert evaluator.evaluate()["AP"] == ONE


def test_classes_map_back_to_sparse_original_ids():
  dataset = _dataset([(1, 100, 100)], [_ann(1, 1, 90, (0, 0, 50, 50)),
                                       _ann(2, 1, 7, (50, 50, 50, 50))])
  evaluator = cm.COCOEvaluator({0: 1, 1: 7, 2: 90, 3: 55}, ground_truth=dataset)
  ids, boxes, scores, classes, valid = _pad_batch(
      [1], [[(_yxyx((0, 0, 50, 50)), 0.9, 2), (_yxyx((50, 50, 50, 50)), 0.8, 1)]])
  evaluator.update(tf.constant(ids), tf.constant(boxes), tf.constant(scores), tf.constant(classes),
                   tf.constant(valid))
  result = evaluator.evaluate()
  assert [d["category_id"] for d in result["detections"]] == [90, 7]
  assert result["AP"] == ONE
  per_class = {e["name"]: (e["category_id"], e["AP"]) for e in result["per_class"]}
  assert per_class == {"person": (1, None), "train": (7, ONE), "toothbrush": (90, ONE),
                       "orange": (55, None)}
  swapped = cm.COCOEvaluator([1, 90, 7, 55], ground_truth=dataset)
  swapped.update(ids, boxes, scores, classes, valid)
  assert swapped.evaluate()["AP"] == 0.0


def test_no_detections_at_all_gives_zeros(capsys):
  dataset = _dataset([(1, 100, 100), (2, 100, 100)], [_ann(1, 1, 7, (10, 10, 10, 10))])
  evaluator = cm.COCOEvaluator(CATEGORY_IDS, ground_truth=dataset)
  evaluator.update(*_pad_batch([1, 2], [[], []]))
  result = evaluator.evaluate()
  # One small object, never found: 0 where COCO has ground truth, -1 where it has none.
  assert [result[n] for n in cm.COCO_METRIC_NAMES] == [0, 0, 0, 0, -1, -1, 0, 0, 0, 0, -1, -1]
  assert result["detections"] == [] and result["num_detections"] == 0
  assert {e["category_id"]: e["AP"] for e in result["per_class"]} == {1: None, 7: 0.0, 55: None,
                                                                      90: None}
  assert len(result["summary"].splitlines()) == 12
  assert capsys.readouterr().out == ""


def test_no_detections_and_no_ground_truth_is_all_undefined():
  evaluator = cm.COCOEvaluator(CATEGORY_IDS)
  evaluator.add_ground_truth([5], [[64, 64]], np.zeros((1, 3, 4)), np.full((1, 3), -1),
                             num_boxes=[0])
  evaluator.update(*_pad_batch([5], [[]]))
  result = evaluator.evaluate()
  assert all(result[n] == -1.0 for n in cm.COCO_METRIC_NAMES)
  assert all(e["AP"] is None for e in result["per_class"])
  assert [e["name"] for e in result["per_class"]] == ["category_1", "category_7", "category_55",
                                                      "category_90"]


def test_evaluates_exactly_the_updated_images():
  dataset = _dataset([(1, 100, 100), (2, 100, 100), (3, 100, 100)],
                     [_ann(1, 1, 1, (10, 10, 20, 20)), _ann(2, 2, 1, (10, 10, 20, 20)),
                      _ann(3, 3, 1, (10, 10, 20, 20))])
  evaluator = cm.COCOEvaluator(CATEGORY_IDS, ground_truth=dataset)
  evaluator.update(*_pad_batch([1], [[(_yxyx((10, 10, 20, 20)), 0.9, 0)]]))
  assert evaluator.evaluate()["AP"] == ONE  # images 2 and 3 were never fed
  # Image 2 fed without detections: its object is missed -> recall 1/2, AP 51/101.
  evaluator.update(*_pad_batch([2], [[]]))
  result = evaluator.evaluate()
  assert result["AP"] == pytest.approx(51 / 101, abs=1e-12)
  assert result["num_images"] == 2 and evaluator.image_ids == [1, 2]
  evaluator.reset()
  evaluator.update(*_pad_batch([3], [[(_yxyx((10, 10, 20, 20)), 0.9, 0)]]))
  assert evaluator.evaluate()["AP"] == ONE


def test_logs_one_line_per_evaluation_and_prints_nothing(capsys, caplog, tmp_path):
  dataset = _dataset([(1, 100, 100)], [_ann(1, 1, 1, (10, 10, 20, 20))])
  path = _write_json(tmp_path, "gt.json", dataset)
  with caplog.at_level(logging.INFO, logger=cm.logger.name):
    evaluator = cm.COCOEvaluator.from_annotations_file(path, CATEGORY_IDS)
    evaluator.update(*_pad_batch([1], [[(_yxyx((10, 10, 20, 20)), 0.9, 0)]]))
    evaluator.evaluate()
  messages = [r.getMessage() for r in caplog.records if r.name == cm.logger.name]
  assert len(messages) == 2
  assert messages[0].startswith(f"Loaded COCO ground truth {path}: 1 images, 1 annotations")
  assert "1 images, 1 detections -> AP 1.0000" in messages[1]
  assert capsys.readouterr().out == ""


def test_metrics_file_round_trip(tmp_path):
  dataset = _dataset([(1, 100, 100)], [_ann(1, 1, 7, (10, 10, 10, 10))])
  evaluator = cm.COCOEvaluator(CATEGORY_IDS, ground_truth=dataset)
  evaluator.update(*_pad_batch([1], [[([10.0, 12.4, 20.0, 22.4], 0.8, 1)]]))
  result = evaluator.evaluate()
  metrics = {k: v for k, v in result.items() if k != "detections"}
  cm.write_metrics_json(str(tmp_path / "metrics.json"), metrics)
  assert cm.read_metrics_json(str(tmp_path / "metrics.json")) == metrics


def test_bad_inputs_are_named():
  dataset = _dataset([(1, 100, 100)], [_ann(1, 1, 1, (10, 10, 20, 20))])
  with pytest.raises(ValueError, match="category id 3, which is not a category"):
    cm.COCOEvaluator([1, 3], ground_truth=dataset)
  evaluator = cm.COCOEvaluator(CATEGORY_IDS, ground_truth=dataset)
  with pytest.raises(ValueError, match="no images were added"):
    evaluator.evaluate()
  with pytest.raises(ValueError, match="image_id 1: class index 4 is outside 0..3"):
    evaluator.update(*_pad_batch([1], [[(_yxyx((10, 10, 20, 20)), 0.9, 4)]]))
  with pytest.raises(ValueError, match="fixed ground truth"):
    evaluator.add_ground_truth([1], [[100, 100]], np.zeros((1, 1, 4)), [[1]], num_boxes=[1])
  evaluator.update(*_pad_batch([1], [[]]))
  with pytest.raises(ValueError, match="image_id 1 were added twice"):
    evaluator.update(*_pad_batch([1], [[]]))
  evaluator.update(*_pad_batch([8], [[]]))
  with pytest.raises(ValueError, match="image_id 8 .* has no ground truth"):
    evaluator.evaluate()
  accumulating = cm.COCOEvaluator(CATEGORY_IDS)
  with pytest.raises(ValueError, match="image_id 4: ground-truth category id 2 is not in"):
    accumulating.add_ground_truth([4], [[10, 10]], np.zeros((1, 1, 4)), [[2]], num_boxes=[1])
  with pytest.raises(ValueError, match="not finite"):
    accumulating.update(*_pad_batch([4], [[([0.0, 0.0, np.nan, 1.0], 0.5, 0)]]))


def test_batch_padding_rows_are_dropped_with_is_valid():
  """The eval input pads the last batch with is_valid=False rows (repeated ids)."""
  evaluator = cm.COCOEvaluator(CATEGORY_IDS)
  person = (10, 10, 20, 20)
  boxes = np.array([[_yxyx(person)], [_yxyx(person)]], np.float32)
  evaluator.add_ground_truth([1, 1], [[100, 100], [100, 100]], boxes, [[1], [1]],
                             num_boxes=[1, 1], is_valid=np.array([True, False]))
  evaluator.update(*_pad_batch([1, 1], [[(_yxyx(person), 0.9, 0)], [(_yxyx(person), 0.9, 0)]]),
                   is_valid=np.array([True, False]))
  result = evaluator.evaluate()
  assert result["num_images"] == 1 and result["num_detections"] == 1
  assert result["AP"] == ONE
  with pytest.raises(ValueError, match="is_valid must be a bool vector"):
    evaluator.update(*_pad_batch([2], [[]]), is_valid=np.array([1]))


def test_label_map_of_the_data_stage_plugs_in():
  from retinanet.coco import LabelMap  # pylint: disable=g-import-not-at-top
  label_map = LabelMap(category_ids=(1, 7, 55, 90), names=("person", "train", "orange", "brush"))
  evaluator = cm.COCOEvaluator(label_map.category_ids,
                               category_names=dict(zip(label_map.category_ids, label_map.names)))
  evaluator.add_ground_truth([1], [[100, 100]], np.array([[_yxyx((0, 0, 50, 50))]]), [[90]],
                             num_boxes=[1])
  evaluator.update(*_pad_batch([1], [[(_yxyx((0, 0, 50, 50)), 0.9, 3)]]))
  result = evaluator.evaluate()
  assert result["detections"][0]["category_id"] == 90
  assert {e["name"]: e["AP"] for e in result["per_class"]} == {
      "person": None, "train": None, "orange": None, "brush": ONE}


def _coco_like(seed, num_images=150, num_classes=12):
  """COCO-like random data with every awkward case: crowd regions, images without ground
  truth, images without detections, classes with no ground truth but with detections,
  near-duplicate and spurious detections, scores with ties."""
  rng = np.random.default_rng(seed)
  categories = [{"id": 3 * c + 2, "name": f"class{c}"} for c in range(num_classes)]
  gt_classes = [c["id"] for c in categories[:-2]]  # the last two have detections only
  images, annotations, detections = [], [], []
  for image_id in range(1, num_images + 1):
    h, w = int(rng.integers(100, 640)), int(rng.integers(100, 640))
    images.append((image_id, h, w))
    empty, undetected = image_id % 10 == 0, image_id % 7 == 0
    for _ in range(0 if empty else int(rng.integers(1, 12))):
      bw, bh = rng.uniform(2, w / 2), rng.uniform(2, h / 2)
      x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
      cat = int(rng.choice(gt_classes))
      annotations.append(_ann(len(annotations) + 1, image_id, cat, (x, y, bw, bh),
                              iscrowd=int(rng.uniform() < 0.05)))
      if not undetected and rng.uniform() < 0.8:
        j = rng.normal(0, 0.1, 4) * [bw, bh, bw, bh]
        detections.append({"image_id": image_id, "category_id": cat,
                           "bbox": [x + j[0], y + j[1], max(bw + j[2], 1), max(bh + j[3], 1)],
                           "score": float(np.round(rng.uniform(), 2))})
    for _ in range(0 if undetected else int(rng.integers(0, 20))):
      bw, bh = rng.uniform(2, w / 2), rng.uniform(2, h / 2)
      detections.append({"image_id": image_id,
                         "category_id": int(rng.choice([c["id"] for c in categories])),
                         "bbox": [rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh],
                         "score": float(np.round(rng.uniform(), 2))})
  return _dataset(images, annotations, categories), detections


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_faster_coco_eval_equals_pycocotools(seed):
  """The default backend against the reference: all 12 numbers and per-class AP to 1e-12."""
  dataset, detections = _coco_like(seed)
  ids = [image["id"] for image in dataset["images"]]
  fast = cm.evaluate_coco(dataset, detections, ids, backend="faster_coco_eval")
  reference = cm.evaluate_coco(dataset, detections, ids, backend="pycocotools")
  for name in cm.COCO_METRIC_NAMES:
    assert fast[name] == pytest.approx(reference[name], abs=1e-12), name
  assert 0.05 < reference["AP"] < 0.9
  assert [e["category_id"] for e in fast["per_class"]] == [
      e["category_id"] for e in reference["per_class"]]
  for ours, theirs in zip(fast["per_class"], reference["per_class"]):
    if theirs["AP"] is None:  # the classes with detections but no ground truth
      assert ours["AP"] is None
    else:
      assert ours["AP"] == pytest.approx(theirs["AP"], abs=1e-12)
  assert sum(e["AP"] is None for e in reference["per_class"]) == 2
  # A subset of the images (some without detections) is evaluated the same way too.
  subset = ids[::3]
  subset_detections = [d for d in detections if d["image_id"] in set(subset)]
  a = cm.evaluate_coco(dataset, subset_detections, subset, backend="faster_coco_eval")
  b = cm.evaluate_coco(dataset, subset_detections, subset, backend="pycocotools")
  assert [a[n] for n in cm.COCO_METRIC_NAMES] == pytest.approx(
      [b[n] for n in cm.COCO_METRIC_NAMES], abs=1e-12)


def test_unknown_backend_is_named():
  with pytest.raises(ValueError, match="unknown COCO evaluation backend 'cocoapi'"):
    cm.COCOEvaluator(CATEGORY_IDS, backend="cocoapi")
