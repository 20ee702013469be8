"""Training parity with Model Garden: same records, initial checkpoint and settings, side by side.

    .venv/bin/python benchmarks/bench_training_parity.py [--seeds 0 1 2] [--write_markdown]
    .venv/bin/python benchmarks/bench_training_parity.py --write_fixture   # the CI reference

Model Garden (tf-models-official 2.16.0) runs in its own venv (created on first
use, as for bench_modelgarden_parity.py) through benchmarks/modelgarden_train_side.py,
which trains Model Garden's `retinanet_resnetfpn_coco` with its own task
(RetinaNetTask: parser, anchor labeler, losses, L2 through the model's
regularizers) and its own trainer (base_trainer.Trainer, SGD from its optimizer
factory, linear warm-up + stepwise schedule). Our side trains the shipped config
parity/retinanet-r50w0125-256-modelgarden with our trainer (train_lib.train).

For each seed:
  * data: the built-in shapes dataset at 256x256 (crowd annotations removed from
    train: Model Garden drops them, we would ignore anchors on them), the train
    images in a seed-dependent order, written by each side in its own format from
    the same COCO JSON (ours: data.convert, one shard; Model Garden: its
    create_coco_tf_record.create_tf_example), both read in file order;
  * initial weights: Model Garden builds its model with a seeded Keras
    initialization and writes the checkpoint; we import it
    (retinanet.modeling.modelgarden_import.import_checkpoint) and fine-tune from it;
  * settings: derived from our config (modelgarden_settings, which refuses a
    setting it cannot express on Model Garden's side);
  * evaluation: one evaluator, pycocotools COCOeval on the same val JSON, for
    Model Garden's detections (its detection generator), ours with our
    post-processing, and ours with Model Garden's NMS settings.
Writes bench_out/training_parity/results.json, docs/training_parity.png (the
loss curves, drawn with the Model Garden venv's matplotlib) and, with
--write_markdown, the "Training parity with Model Garden" section of BENCHMARKS.md.

--write_fixture instead writes tests/fixtures/modelgarden_training/: the first
FIXTURE_STEPS batches of images and their annotations, Model Garden's initial
checkpoint (seed 0) and its losses at each of those steps (warm-up shortened to
FIXTURE_STEPS so the steps move the weights), with 2 and with 1 TensorFlow thread
(their difference is Model Garden's own float noise), which
tests/test_training_parity.py reproduces without Model Garden.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top
import bench_modelgarden_parity as venv_lib  # noqa: E402  (ensure_venv, subprocess_env)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from data import convert, sample_data  # noqa: E402
from retinanet import config as config_lib  # noqa: E402
from retinanet import configs  # noqa: E402
from retinanet.dataloader import schema  # noqa: E402
from retinanet.evaluation import coco_metrics, evaluate_model  # noqa: E402
from retinanet.modeling import modelgarden_import  # noqa: E402
from retinanet.task import load_model_dir  # noqa: E402
from retinanet.training import train_lib  # noqa: E402

HEADING = "## Training parity with Model Garden"
CONFIG_NAME = "parity/retinanet-r50w0125-256-modelgarden"
SIDE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "modelgarden_train_side.py")
DEFAULT_OUT = os.path.join(common.ROOT, "bench_out", "training_parity")
PLOT_PATH = os.path.join(common.ROOT, "docs", "training_parity.png")
FIXTURE_DIR = os.path.join(common.ROOT, "tests", "fixtures", "modelgarden_training")
FIXTURE_STEPS = 5
IMAGE_SIZE = (256, 256)
# (label, our history key, Model Garden's log key)
TERMS = (("class", "class_loss", "cls_loss"), ("box", "box_loss", "box_loss"),
         ("L2", "l2_regularization", "l2_loss"), ("total", "total_loss", "total_loss"))
REPORT_STEPS = (1, 10, 50, 100)
# Model Garden's detection generator for retinanet_resnetfpn_coco, in our terms (its
# pre_nms_top_k counts candidates over all levels, ours per level: at 256 px no level
# has more than 5000 candidates above the score threshold anyway).
MODELGARDEN_POSTPROCESS = dict(nms_mode="per_class_hard", pre_nms_top_k=5000,
                               score_threshold=0.05, iou_threshold=0.5, max_detections=100,
                               max_detections_per_class=100)


def modelgarden_settings(config: config_lib.ExperimentConfig, seed: int) -> Dict[str, Any]:
  """Model Garden's values of our config's training settings; raises on one it cannot take."""
  m, l, o, i, t = config.model, config.loss, config.optimizer, config.input, config.train
  expressible = {
      "optimizer.type == 'sgd'": o.type == "sgd",
      "optimizer.schedule == 'piecewise'": o.schedule == "piecewise",
      "no gradient clipping, no EMA": o.gradient_clip_norm == 0 and o.ema_decay == 0,
      "loss.box_loss == 'huber'": l.box_loss == "huber",
      "unscaled box deltas": tuple(m.box_variances) == (1.0, 1.0, 1.0, 1.0),
      "loss.positives_offset == 1 (positives + 1)": l.positives_offset == 1.0,
      "loss.normalizer_momentum == 0": l.normalizer_momentum == 0.0,
      "force_match_for_each_col": (m.matcher.allow_low_quality_matches
                                   and m.matcher.low_quality_rule == "first_argmax"),
      "Model Garden's anchors": (m.anchors.scales_per_octave == 3
                                 and tuple(m.anchors.aspect_ratios) == (0.5, 1.0, 2.0)),
      "Model Garden's architecture": (m.padding == "same" and m.fpn.p6_source == "p5"
                                      and m.fpn.use_batch_norm and m.head.use_batch_norm),
      "nothing frozen": not (m.backbone.freeze_stem_and_first_stage
                             or m.backbone.freeze_batch_norm),
      "float32": t.mixed_precision == "float32",
      "square input": m.input_size[0] == m.input_size[1],
  }
  missing = [k for k, ok in expressible.items() if not ok]
  if missing:
    raise ValueError(f"{config.name}: Model Garden's side cannot take {missing}")
  return {
      "num_classes": m.num_classes, "image_size": m.input_size[0],
      "min_level": m.fpn.min_level, "max_level": m.fpn.max_level,
      "anchor_size": m.anchors.anchor_size, "depth": m.backbone.depth,
      "width_multiplier": m.backbone.width_multiplier, "fpn_channels": m.fpn.num_channels,
      "head_channels": m.head.num_channels, "head_convs": m.head.num_convs,
      "bn_momentum": m.norm.momentum, "bn_epsilon": m.norm.epsilon,
      "eval_score_threshold": MODELGARDEN_POSTPROCESS["score_threshold"],
      "focal_alpha": l.focal_alpha, "focal_gamma": l.focal_gamma,
      "huber_delta": l.huber_delta, "box_loss_weight": l.box_loss_weight,
      "l2_weight_decay": l.l2_weight_decay,
      "batch_size": t.global_batch_size, "seed": seed, "steps": t.total_steps,
      "horizontal_flip": i.horizontal_flip, "scale_min": i.scale_min, "scale_max": i.scale_max,
      "positive_iou": m.matcher.positive_iou, "negative_iou": m.matcher.negative_iou,
      "momentum": o.momentum,
      # tf's PiecewiseConstantDecay switches after its boundary, ours at it.
      "boundaries": [b - 1 for b in o.boundaries],
      "learning_rates": [o.base_learning_rate] + [o.base_learning_rate * r
                                                  for r in o.decay_rates],
      "warmup_steps": o.warmup_steps, "warmup_learning_rate": o.warmup_learning_rate,
  }


@dataclasses.dataclass
class Data:
  train_json: str   # crowd annotations removed
  train_images: str
  val_json: str
  val_images: str


def prepare_data(root: str, num_train: int, num_val: int) -> Data:
  """The shapes dataset at IMAGE_SIZE; train without crowd annotations."""
  sample = sample_data.generate_sample_dataset(os.path.join(root, "sample"), num_train, num_val,
                                                IMAGE_SIZE, seed=0)
  with open(sample.annotation_files["train"]) as f:
    train = json.load(f)
  train["annotations"] = [a for a in train["annotations"] if not a.get("iscrowd")]
  train_json = os.path.join(root, "instances_train_nocrowd.json")
  with open(train_json, "w") as f:
    json.dump(train, f)
  return Data(train_json, sample.image_dirs["train"], sample.annotation_files["val"],
              sample.image_dirs["val"])


def ordered_train_json(data: Data, seed: int, path: str, num_images: Optional[int] = None) -> str:
  """The train JSON with its images in a seed's order (the first num_images of it).

  Image ids are renumbered in that order: our converter writes a shard sorted by
  image id, Model Garden's records follow the JSON, and both then read the same
  sequence (convert_ours checks it).
  """
  with open(data.train_json) as f:
    train = json.load(f)
  order = np.random.default_rng(seed).permutation(len(train["images"]))
  images = [train["images"][k] for k in order][:num_images]
  base = min(image["id"] for image in train["images"])
  new_id = {image["id"]: base + rank for rank, image in enumerate(images)}
  train["images"] = [dict(image, id=new_id[image["id"]]) for image in images]
  train["annotations"] = [dict(a, image_id=new_id[a["image_id"]]) for a in train["annotations"]
                          if a["image_id"] in new_id]
  with open(path, "w") as f:
    json.dump(train, f)
  return path


def record_image_ids(pattern: str) -> List[int]:
  ids = []
  for record in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type="GZIP"):
    example = tf.train.Example.FromString(record.numpy())
    ids.append(int(example.features.feature[schema.IMAGE_ID].int64_list.value[0]))
  return ids


def convert_ours(train_json: str, data: Data, out_dir: str, with_val: bool = True):
  """Our records (one shard per split), checked to be in the JSON's image order."""
  splits = {"train": (train_json, data.train_images)}
  if with_val:
    splits["val"] = (data.val_json, data.val_images)
  shutil.rmtree(out_dir, ignore_errors=True)
  result = convert.convert_coco(splits, out_dir, num_shards=1, in_process=True)
  train_pattern = os.path.join(result.split_dirs["train"], "*")
  with open(train_json) as f:
    expected = [image["id"] for image in json.load(f)["images"]]
  if record_image_ids(train_pattern) != expected:
    raise RuntimeError(f"{train_pattern}: records are not in the order of {train_json}")
  return result, train_pattern


def run_modelgarden(venv: str, settings: Dict[str, Any], out_dir: str) -> Dict[str, Any]:
  """Model Garden's side in its venv; returns its losses.json (plus "wall_seconds")."""
  os.makedirs(out_dir, exist_ok=True)
  settings_path = os.path.join(out_dir, "settings.json")
  with open(settings_path, "w") as f:
    json.dump(settings, f, indent=1)
  start = time.perf_counter()
  with open(os.path.join(out_dir, "side.log"), "w") as log:
    proc = subprocess.Popen([os.path.join(venv, "bin", "python"), SIDE_SCRIPT, settings_path,
                             out_dir], env=venv_lib.subprocess_env(), stdout=subprocess.PIPE,
                            stderr=log, text=True)
    for line in proc.stdout:
      print(line, end="", flush=True)
  if proc.wait() != 0:
    raise SystemExit(f"Model Garden side failed (exit {proc.returncode}); see "
                     f"{os.path.join(out_dir, 'side.log')}")
  with open(os.path.join(out_dir, "losses.json")) as f:
    result = json.load(f)
  result["wall_seconds"] = time.perf_counter() - start
  return result


def parity_config(seed: int, overrides: Sequence[str] = ()) -> config_lib.ExperimentConfig:
  config = config_lib.apply_overrides(configs.load_named_config(CONFIG_NAME),
                                      [f"train.seed={seed}", *overrides])
  config_lib.validate(config)
  return config


def train_ours(config, train_pattern: str, init_checkpoint: str, work_dir: str):
  """Our trainer from Model Garden's initial checkpoint; returns (TrainResult, model_dir)."""
  imported = os.path.join(work_dir, "imported")
  shutil.rmtree(work_dir, ignore_errors=True)
  modelgarden_import.import_checkpoint(init_checkpoint, imported,
                                       input_size=tuple(config.model.input_size))
  model_dir = os.path.join(work_dir, "model")
  result = train_lib.train(config, train_files=train_pattern, model_dir=model_dir,
                           finetune_from=imported)
  return result, model_dir


def our_losses(result) -> List[Dict[str, float]]:
  keys = [ours for _, ours, _ in TERMS] + ["learning_rate", "num_positives", "gradient_norm"]
  return [dict(step=step, **{k: float(m[k]) for k in keys}) for step, m in result.history]


def evaluate_ours(config, model_dir: str, conversion, val_json: str) -> Dict[str, Dict]:
  """Our detections on val with our post-processing and with Model Garden's settings."""
  model = load_model_dir(model_dir, config=config).model
  val_pattern = os.path.join(conversion.split_dirs["val"], "*")
  out = {}
  for name, postprocess in (("ours", config.postprocess),
                            ("ours_mg_nms", dataclasses.replace(config.postprocess,
                                                                **MODELGARDEN_POSTPROCESS))):
    run_config = dataclasses.replace(config, postprocess=postprocess)
    result = evaluate_model.evaluate(model, run_config, val_pattern, conversion.label_map,
                                     ground_truth_path=val_json)
    out[name] = result.detections
  return out


def score(ground_truth, detections) -> Dict[str, float]:
  """The one evaluator: pycocotools COCOeval."""
  result = coco_metrics.evaluate_coco(ground_truth, detections, backend="pycocotools")
  return {k: float(result[k]) for k in ("AP", "AP50", "AP75")}


def run_seed(seed: int, data: Data, venv: str, out_root: str, threads: int) -> Dict[str, Any]:
  out = os.path.join(out_root, f"seed{seed}")
  train_json = ordered_train_json(data, seed, os.path.join(out_root, f"train_seed{seed}.json"))
  config = parity_config(seed)
  settings = modelgarden_settings(config, seed)
  settings.update(train_annotations=train_json, train_images=data.train_images,
                  val_annotations=data.val_json, val_images=data.val_images, threads=threads)
  print(f"seed {seed}: Model Garden trains {config.train.total_steps} steps", flush=True)
  mg = run_modelgarden(venv, settings, os.path.join(out, "modelgarden"))
  conversion, train_pattern = convert_ours(train_json, data, os.path.join(out, "records"))
  print(f"seed {seed}: ours trains {config.train.total_steps} steps", flush=True)
  start = time.perf_counter()
  result, model_dir = train_ours(config, train_pattern,
                                 os.path.join(out, "modelgarden", "init", "ckpt"),
                                 os.path.join(out, "ours"))
  ours_seconds = time.perf_counter() - start
  detections = evaluate_ours(config, model_dir, conversion, data.val_json)
  with open(os.path.join(out, "modelgarden", "detections.json")) as f:
    detections["modelgarden"] = json.load(f)
  ground_truth = coco_metrics.load_coco_ground_truth(data.val_json)
  return {
      "seed": seed,
      "losses": {"modelgarden": mg["steps"], "ours": our_losses(result)},
      "ap": {name: score(ground_truth, dets) for name, dets in detections.items()},
      "train_seconds": {"modelgarden": mg["seconds"], "ours": result.wall_time_seconds},
      "wall_seconds": {"modelgarden": mg["wall_seconds"], "ours": ours_seconds},
      "versions": mg["versions"],
  }


# ------------------------------------------------------------------ the report


def loss_at(run: Dict[str, Any], side: str, step: int, term: int) -> float:
  _, ours_key, mg_key = TERMS[term]
  row = run["losses"][side][step - 1]
  assert row["step"] == step
  return row[ours_key if side == "ours" else mg_key]


def relative(a: float, b: float) -> float:
  return abs(a - b) / max(abs(b), 1e-12)


def spread(values: Sequence[float]) -> str:
  values = np.asarray(values, np.float64)
  return f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.4f}"


def ap_table(runs: List[Dict[str, Any]]) -> List[str]:
  lines = ["| model | AP mean ± sd | AP50 mean ± sd | AP per seed | AP range |",
           "|---|---|---|---|---|"]
  names = (("modelgarden", "Model Garden (its detection generator)"),
           ("ours", "ours (our post-processing)"),
           ("ours_mg_nms", "ours with Model Garden's NMS settings"))
  for key, label in names:
    ap = [r["ap"][key]["AP"] for r in runs]
    ap50 = [r["ap"][key]["AP50"] for r in runs]
    lines.append(f"| {label} | {spread(ap)} | {spread(ap50)} | "
                 f"{', '.join(f'{v:.4f}' for v in ap)} | {max(ap) - min(ap):.4f} |")
  return lines


def loss_table(runs: List[Dict[str, Any]]) -> List[str]:
  last = min(len(r["losses"]["ours"]) for r in runs)
  steps = [s for s in REPORT_STEPS if s < last] + [last]
  lines = ["| term | step | Model Garden (mean over seeds) | ours (mean over seeds) | "
           "largest relative difference (one seed) |", "|---|---|---|---|---|"]
  for term, (label, _, _) in enumerate(TERMS):
    for step in steps:
      mg = [loss_at(r, "modelgarden", step, term) for r in runs]
      ours = [loss_at(r, "ours", step, term) for r in runs]
      worst = max(relative(o, m) for o, m in zip(ours, mg))
      lines.append(f"| {label} | {step} | {np.mean(mg):.6f} | {np.mean(ours):.6f} | "
                   f"{worst:.2e} |")
  return lines


def worst_relative(runs: List[Dict[str, Any]], step: int) -> float:
  return max(relative(loss_at(r, "ours", step, t), loss_at(r, "modelgarden", step, t))
             for r in runs for t in range(len(TERMS)))


def mean_relative(runs: List[Dict[str, Any]], step: int) -> float:
  return max(relative(np.mean([loss_at(r, "ours", step, t) for r in runs]),
                      np.mean([loss_at(r, "modelgarden", step, t) for r in runs]))
             for t in range(len(TERMS)))


def plot(results_path: str, venv: str) -> None:
  subprocess.run([os.path.join(venv, "bin", "python"), SIDE_SCRIPT, "--plot", results_path,
                  PLOT_PATH], env=venv_lib.subprocess_env(), check=True)


def run_noise_control(venv: str, out_root: str) -> None:
  """Model Garden's seed-0 run again with 1 TensorFlow thread instead of 2: the same
  program, weights and batches, only the order of its parallel float sums differs."""
  settings_path = os.path.join(out_root, "seed0", "modelgarden", "settings.json")
  with open(settings_path) as f:
    settings = json.load(f)
  settings["threads"] = 1
  run_modelgarden(venv, settings, os.path.join(out_root, "noise_control"))


def noise_control_lines(runs: List[Dict[str, Any]], out_root: str) -> List[str]:
  """The report's lines on Model Garden against itself (run_noise_control), if it ran."""
  path = os.path.join(out_root, "noise_control", "losses.json")
  seed0 = [r for r in runs if r["seed"] == 0]
  if not os.path.exists(path) or not seed0:
    return []
  with open(path) as f:
    steps = json.load(f)["steps"]
  with open(os.path.join(out_root, "noise_control", "detections.json")) as f:
    detections = json.load(f)
  with open(os.path.join(out_root, "seed0", "modelgarden", "settings.json")) as f:
    ground_truth = coco_metrics.load_coco_ground_truth(json.load(f)["val_annotations"])
  control = {"seed": 0, "losses": {"ours": [], "modelgarden": steps}}
  worst = {step: max(relative(loss_at(control, "modelgarden", step, t),
                              loss_at(seed0[0], "modelgarden", step, t))
                     for t in range(len(TERMS))) for step in (1, 5, 10, 20)}
  ap = score(ground_truth, detections)["AP"]
  return [
      "Model Garden against itself (`--noise_control`): its seed-0 run again with 1 "
      "TensorFlow thread instead of 2 (same program, weights and batches; only the order of "
      "parallel float sums changes). Largest relative difference of any term: "
      + ", ".join(f"step {s} {v:.2e}" for s, v in worst.items())
      + f"; AP {ap:.4f} against {seed0[0]['ap']['modelgarden']['AP']:.4f}. Training here is "
      "chaotic: float rounding grows about twofold per step from step 3 on, so two correct "
      "implementations agree step by step only for the first few steps, and afterwards in "
      "distribution (the loss curves' level, the AP's mean and spread over seeds).", ""]


def report(runs: List[Dict[str, Any]], header: str, out_root: str) -> str:
  config = parity_config(runs[0]["seed"])
  ap = {k: [r["ap"][k]["AP"] for r in runs] for k in ("modelgarden", "ours", "ours_mg_nms")}
  mean_gap = abs(np.mean(ap["ours_mg_nms"]) - np.mean(ap["modelgarden"]))
  seed_spread = max(max(v) - min(v) for v in ap.values())
  ips = {side: np.mean([config.train.global_batch_size * config.train.total_steps
                        / r["train_seconds"][side] for r in runs])
         for side in ("modelgarden", "ours")}
  lines = [
      HEADING, "",
      f"{header}. Model Garden: tf-models-official {runs[0]['versions']['tf-models-official']} "
      f"(tensorflow {runs[0]['versions']['tensorflow']}) in its own venv; ours: the shipped "
      f"config `{CONFIG_NAME}` ({config.train.total_steps} steps of "
      f"{config.train.global_batch_size} images, ResNet-50 x0.125 FPN 64, 256x256), "
      f"seeds {', '.join(str(r['seed']) for r in runs)}: each seed draws Model Garden's initial "
      "weights (which we import) and the order of the train images (the same for both).", "",
      "AP on the 100 val images, all scored by pycocotools COCOeval on the same JSON:", "",
      *ap_table(runs), "",
      f"Difference of the means (ours with Model Garden's NMS settings vs Model Garden): "
      f"{mean_gap:.4f}; largest seed-to-seed range of any row: {seed_spread:.4f}.", "",
      "Every loss term (class = focal loss, box = Huber, both divided by positives + 1; "
      "L2 = weight decay; total = class + 50 box + L2):", "",
      *loss_table(runs), "",
      f"Largest relative difference over all terms and seeds: step 1 "
      f"{worst_relative(runs, 1):.2e}, step 10 {worst_relative(runs, 10):.2e}; of the means "
      f"over seeds at step 10: {mean_relative(runs, 10):.2e}.", "",
      *noise_control_lines(runs, out_root),
      f"Training speed on this machine: Model Garden {ips['modelgarden']:.1f} img/s, ours "
      f"{ips['ours']:.1f} img/s (one step per call on both sides, to log every step).", "",
      "![Loss curves, Model Garden and ours](docs/training_parity.png)", "",
  ]
  return "\n".join(lines)


def write_fixture(data: Data, venv: str, out_root: str) -> None:
  """tests/fixtures/modelgarden_training: FIXTURE_STEPS batches, Model Garden's initial
  checkpoint and its per-step losses (warm-up over the FIXTURE_STEPS steps), twice: with
  2 and with 1 TensorFlow thread, whose difference is Model Garden's own float noise (the
  order of its parallel sums), kept beside the reference as the evidence for the test's
  tolerances."""
  overrides = [f"train.total_steps={FIXTURE_STEPS}", f"optimizer.warmup_steps={FIXTURE_STEPS}"]
  config = parity_config(0, overrides)
  num_images = FIXTURE_STEPS * config.train.global_batch_size
  shutil.rmtree(FIXTURE_DIR, ignore_errors=True)
  images_dir = os.path.join(FIXTURE_DIR, "images")
  os.makedirs(images_dir)
  annotations = ordered_train_json(data, 0, os.path.join(FIXTURE_DIR, "annotations.json"),
                                   num_images)
  with open(annotations) as f:
    for image in json.load(f)["images"]:
      shutil.copy(os.path.join(data.train_images, image["file_name"]), images_dir)
  runs = {}
  for threads in (2, 1):
    settings = modelgarden_settings(config, 0)
    settings.update(train_annotations=annotations, train_images=images_dir, eval=False,
                    threads=threads)
    runs[threads] = run_modelgarden(venv, settings, os.path.join(out_root, f"fixture{threads}"))
  for name in ("ckpt.index", "ckpt.data-00000-of-00001"):
    shutil.copy(os.path.join(out_root, "fixture2", "init", name), FIXTURE_DIR)
  with open(os.path.join(FIXTURE_DIR, "modelgarden_losses.json"), "w") as f:
    json.dump({"config": CONFIG_NAME, "overrides": overrides, "versions": runs[2]["versions"],
               "steps": runs[2]["steps"], "steps_one_thread": runs[1]["steps"]}, f, indent=1)
  print(f"wrote {FIXTURE_DIR}")


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--num_train", type=int, default=400)
  parser.add_argument("--num_val", type=int, default=100)
  parser.add_argument("--out", default=DEFAULT_OUT)
  parser.add_argument("--venv", default=venv_lib.DEFAULT_VENV)
  parser.add_argument("--python", default=venv_lib.DEFAULT_PYTHON,
                      help="base interpreter of the Model Garden venv")
  parser.add_argument("--threads", type=int, default=0, help="TF intra-op threads, both sides")
  parser.add_argument("--write_markdown", action="store_true")
  parser.add_argument("--write_fixture", action="store_true")
  parser.add_argument("--noise_control", action="store_true",
                      help="also run Model Garden's seed 0 with 1 thread (its own float noise)")
  parser.add_argument("--keep_finished", action="store_true",
                      help="reuse the seeds already in OUT/results.json (same code only)")
  parser.add_argument("--report_only", action="store_true",
                      help="re-write the report from OUT/results.json")
  args = parser.parse_args(argv)
  if args.threads:
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
  start, load_start = time.perf_counter(), common.load_average()
  results_path = os.path.join(args.out, "results.json")
  venv_lib.ensure_venv(os.path.abspath(args.venv), args.python)
  if args.report_only:
    with open(results_path) as f:
      runs = json.load(f)["runs"]
  else:
    data = prepare_data(args.out, args.num_train, args.num_val)
    if args.write_fixture:
      write_fixture(data, args.venv, args.out)
      return 0
    done = {}
    if args.keep_finished and os.path.exists(results_path):
      with open(results_path) as f:
        done = {run["seed"]: run for run in json.load(f)["runs"]}
    runs = []
    for seed in args.seeds:
      runs.append(done.get(seed) or run_seed(seed, data, args.venv, args.out, args.threads))
      with open(results_path, "w") as f:
        json.dump({"runs": runs}, f)
    if args.noise_control:
      run_noise_control(args.venv, args.out)
  header = common.run_header(common.command_line("bench_training_parity.py", argv),
                             time.perf_counter() - start, load_start, common.load_average())
  with open(results_path) as f:
    results = json.load(f)
  if args.report_only:
    header = results.get("header", header)  # the run's own command, time and load
  else:
    results["header"] = header
    with open(results_path, "w") as f:
      json.dump(results, f)
  plot(results_path, args.venv)
  common.publish(report(runs, header, args.out), HEADING, args.write_markdown)
  return 0


if __name__ == "__main__":
  sys.exit(main())
