"""The HTML evaluation report: its pieces against references (TF IoU, COCOeval's AP50/AP75,
hand-computed matches), and the page itself loaded in a real headless Chromium."""
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from retinanet.evaluation import coco_metrics, report

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(REPO_ROOT, "test-artifacts")  # gitignored; CI keeps it
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)


def test_match_image_by_hand():
  gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 40, 10, 50], [50, 50, 90, 90.]])
  gt_classes, crowd = [1, 1, 2, 1], [False, False, False, True]
  det = np.array([[0, 0, 10, 10],      # 0.9: matches gt 0 (IoU 1)
                  [0, 1, 10, 11],      # 0.8: gt 0 taken -> false positive
                  [21, 21, 31, 31],    # 0.7: matches gt 1 (IoU 81/119 = 0.68)
                  [0, 40, 10, 50],     # 0.6: class 1 on a class-2 box -> false positive
                  [60, 60, 70, 70.]])  # 0.5: inside the crowd box -> ignored (matched)
  gt_matched, det_matched = report.match_image(gt, gt_classes, crowd, det, [1, 1, 1, 1, 1],
                                               [0.9, 0.8, 0.7, 0.6, 0.5])
  # The crowd-box detection has IoU 100/1600 < 0.5 with the crowd box: not ignored either.
  assert gt_matched.tolist() == [True, True, False, True]
  assert det_matched.tolist() == [True, False, True, False, False]
  inside = np.array([[50, 50, 88, 88.]])  # IoU 0.9 with the crowd box -> not a false positive
  _, det_matched = report.match_image(gt, gt_classes, crowd, inside, [1], [0.95])
  assert det_matched.tolist() == [True]


def _toy_dataset(seed=0, num_images=12):
  rng = np.random.RandomState(seed)
  categories = [{"id": 3, "name": "café sign"}, {"id": 7, "name": "кошка"},
                {"id": 9, "name": "猫"}, {"id": 11, "name": "never seen"}]
  images, anns, dets = [], [], []
  for i in range(1, num_images + 1):
    images.append({"id": i, "width": 96, "height": 64, "file_name": f"{i}.jpg"})
    for _ in range(rng.randint(0, 4)):
      x, y, w, h = rng.uniform(0, 50), rng.uniform(0, 30), rng.uniform(8, 40), rng.uniform(8, 30)
      cat = int(rng.choice([3, 7, 9]))
      anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat, "bbox": [x, y, w, h],
                   "area": w * h, "iscrowd": 0})
      if rng.rand() < 0.8:
        jitter = rng.normal(0, 2, 4)
        dets.append({"image_id": i, "category_id": cat, "bbox": list(np.add([x, y, w, h], jitter)),
                     "score": float(rng.uniform(0.3, 1))})
    for _ in range(rng.randint(0, 3)):
      dets.append({"image_id": i, "category_id": int(rng.choice([3, 7, 9])),
                   "bbox": list(rng.uniform(5, 40, 4)), "score": float(rng.uniform(0, 1))})
  return {"images": images, "annotations": anns, "categories": categories}, dets


def test_overall_pr_curves_average_to_cocoeval_ap50_and_ap75():
  gt, dets = _toy_dataset()
  result = coco_metrics.evaluate_coco(gt, dets, backend="pycocotools")
  curves = result["pr_curves"]
  assert len(curves["recall"]) == 101
  assert np.mean(curves["iou"]["0.5"]["all"]) == pytest.approx(result["AP50"], abs=1e-12)
  assert np.mean(curves["iou"]["0.75"]["all"]) == pytest.approx(result["AP75"], abs=1e-12)
  assert "11" not in curves["iou"]["0.5"]["per_class"]  # no ground truth: no curve
  assert sorted(curves["iou"]["0.5"]["per_class"]) == ["3", "7", "9"]


def test_pick_samples_orders_groups_without_repeats():
  errors = [report.ImageErrors(1, 0, 0.0), report.ImageErrors(2, 3, 0.4),
            report.ImageErrors(3, 1, 0.95), report.ImageErrors(4, 0, 0.6)]
  groups = dict(report.pick_samples(errors, per_group=2))
  assert groups["Most missed objects"] == [2, 3]
  assert groups["Most confident false positives"] == [4]  # 3 is already shown
  assert groups["First images"] == [1]


def build_sample_report(path):
  gt, dets = _toy_dataset()
  result = coco_metrics.evaluate_coco(gt, dets, backend="pycocotools")
  errors = report.image_errors(gt, dets, [i["id"] for i in gt["images"]])
  names = {c["id"]: c["name"] for c in gt["categories"]}
  index = {c: k for k, c in enumerate(sorted(names))}
  rng = np.random.RandomState(1)
  samples = []
  for group, ids in report.pick_samples(errors):
    images = []
    for i in ids:
      pixels = rng.randint(0, 255, (64, 96, 3)).astype(np.uint8)
      images.append((f"image {i}", report.draw_sample(
          pixels, [a for a in gt["annotations"] if a["image_id"] == i],
          [d for d in dets if d["image_id"] == i], index, names)))
    samples.append((group, images))
  baseline = {k: max(0.0, v - 0.05) for k, v in result.items() if k in coco_metrics.COCO_METRIC_NAMES}
  text = report.build_report(
      title="Evaluation of model 7 on the val split", metrics=result, per_class=result["per_class"],
      pr_curves=result["pr_curves"], blessing={"blessed": True, "reason": "AP 0.5 >= 0.3"},
      baseline_metrics=baseline, samples=samples, details=[("model", "/tmp/model/7")])
  with open(path, "w") as f:
    f.write(text)
  return text, samples


def test_report_is_self_contained_and_has_every_section(tmp_path):
  text, samples = build_sample_report(str(tmp_path / "report.html"))
  assert not re.search(r"(src|href)=\"(https?:)?//", text)  # nothing fetched at view time
  for heading in ("Per-class AP", "Precision-recall, all classes", "Precision-recall per class",
                  "By object size", "Most missed objects", "baseline (last blessed)", "Blessed"):
    assert heading in text, heading
  assert "café sign" in text and "кошка" in text and "猫" in text
  assert text.count("<svg") == 1 + 2 + 2 + 1  # classes, 2 overall PR, 2 per-class PR, sizes
  assert text.count("<img") == sum(len(images) for _, images in samples) > 0


def test_report_renders_in_headless_chromium(tmp_path):
  """Loads the page in a real browser: every chart drawn, every image decoded, no script
  or console error; keeps a screenshot in test-artifacts/."""
  if CHROMIUM is None:
    message = "no Chromium: scripts/install_browser.sh (run by make test) installs it"
    if os.environ.get("REQUIRE_BROWSER") == "1":  # CI (.ci/run): never skip silently
      pytest.fail(message)
    pytest.skip(message)
  page = tmp_path / "report.html"
  _, samples = build_sample_report(str(page))
  common = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}"]
  dom = subprocess.run(common + ["--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
                                 "--dump-dom", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
  assert dom.returncode == 0, dom.stderr[-2000:]
  match = re.search(r'<body data-rendered="([^"]*)"', dom.stdout)
  assert match, "the page's load handler did not run:\n" + dom.stdout[:500]
  state = json.loads(match.group(1).replace("&quot;", '"'))
  assert state["errors"] == [] and state["broken_images"] == 0, state
  assert state["images"] == sum(len(images) for _, images in samples) > 0
  assert state["charts"] == state["drawn_charts"] == 6
  console = [l for l in dom.stderr.splitlines() if "CONSOLE" in l]
  assert not console, console
  os.makedirs(ARTIFACTS, exist_ok=True)
  screenshot = os.path.join(ARTIFACTS, "evaluation_report.png")
  shot = subprocess.run(common + ["--window-size=1100,2400", f"--screenshot={screenshot}",
                                  page.as_uri()], capture_output=True, text=True, timeout=120)
  assert shot.returncode == 0, shot.stderr[-2000:]
  with Image.open(screenshot) as image:
    assert image.size == (1100, 2400)
    assert len(set(image.convert("L").resize((110, 240)).getdata())) > 20  # not a blank page


def _perfect_evaluation(tmp_path):
  """Records of 4 sample images, their annotations JSON and an EvalResult of perfect
  detections (the ground-truth boxes at score 0.9)."""
  from retinanet.evaluation import evaluate_model  # pylint: disable=g-import-not-at-top
  from tests.test_training_fixtures import write_sample_records  # pylint: disable=g-import-not-at-top
  files = write_sample_records(str(tmp_path / "data"), num_images=4, num_shards=1)
  gt_path = str(tmp_path / "data" / "raw" / "annotations" / "instances_train.json")
  gt = coco_metrics.load_coco_ground_truth(gt_path)
  dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
           "score": 0.9} for a in gt["annotations"]]
  scored = coco_metrics.evaluate_coco(gt, dets)
  result = evaluate_model.EvalResult(
      {k: scored[k] for k in coco_metrics.COCO_METRIC_NAMES}, scored["per_class"], dets,
      scored["summary"], 4, 0.0, 0.0, scored["pr_curves"])
  return files, gt_path, gt, result


def test_write_report_from_records_and_annotations(tmp_path):
  """The Evaluator's path: images read back from the records, ground truth from the JSON."""
  from retinanet.evaluation import evaluate_model  # pylint: disable=g-import-not-at-top
  files, gt_path, gt, result = _perfect_evaluation(tmp_path)
  path = evaluate_model.write_report(
      str(tmp_path / "report.html"), result, title="t", file_pattern=files,
      ground_truth_path=gt_path, blessing={"blessed": False, "reason": "AP below 0.3"})
  text = open(path).read()
  assert "Not blessed" in text and "AP below 0.3" in text
  assert "First images" in text and "Most missed objects" not in text  # nothing was missed
  assert text.count("<img") == min(len(gt["images"]), report.SAMPLES_PER_GROUP)


def test_tensorboard_pr_curves_and_images_from_an_evaluation(tmp_path):
  """write_eval_summaries on perfect detections of real records: PR-curve summaries (the
  plugin's [TP, FP, TN, FN, precision, recall] tensor) and images with boxes drawn."""
  from retinanet import coco  # pylint: disable=g-import-not-at-top
  from retinanet.evaluation import evaluate_model  # pylint: disable=g-import-not-at-top
  files, gt_path, gt, result = _perfect_evaluation(tmp_path)
  scored = {"per_class": result.per_class_ap}
  label_map = coco.LabelMap.from_categories(gt["categories"])
  writer = tf.summary.create_file_writer(str(tmp_path / "tb"))
  evaluate_model.write_eval_summaries(writer, 7, result, file_pattern=files,
                                      ground_truth_path=gt_path, label_map=label_map)
  curves, images = {}, {}
  for name in os.listdir(tmp_path / "tb"):
    for event in tf.compat.v1.train.summary_iterator(str(tmp_path / "tb" / name)):
      for v in event.summary.value:
        plugin = v.metadata.plugin_data.plugin_name
        if plugin == "pr_curves":
          curves[v.tag[:-len("/pr_curves")]] = tf.make_ndarray(v.tensor)
          assert event.step == 7
        elif v.tag.startswith("eval_images/"):
          images[v.tag] = tf.make_ndarray(v.tensor)
  classes = {c["category_id"] for c in scored["per_class"] if c["num_ground_truth"]}
  assert set(curves) == {f"eval_pr/iou{i}/{n}" for i in ("0.5", "0.75")
                         for n in ["all"] + [label_map.names[label_map.category_ids.index(c)]
                                             for c in classes]}
  all_05 = curves["eval_pr/iou0.5/all"]
  assert all_05.shape == (6, 101)
  np.testing.assert_allclose(all_05[4], 1.0)                       # perfect precision
  np.testing.assert_allclose(all_05[5], np.linspace(1, 0, 101), atol=1e-9)  # recall 1 -> 0
  assert sorted(images) == ["eval_images/0", "eval_images/1", "eval_images/2"]
  assert all(i.dtype == object for i in images.values())  # encoded PNG + dims
