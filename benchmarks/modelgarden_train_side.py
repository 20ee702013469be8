"""Model Garden side of bench_training_parity.py: its RetinaNet, its own task and trainer.

    <modelgarden venv>/bin/python benchmarks/modelgarden_train_side.py SETTINGS.json OUT_DIR
    <modelgarden venv>/bin/python benchmarks/modelgarden_train_side.py --plot RESULTS.json OUT.png

Runs ONLY in the Model Garden venv (tf-models-official 2.16.0); imports nothing
from this repository. SETTINGS.json (written by bench_training_parity.py from
our parity config) holds the data paths and every matched setting. Steps:
  1. records in Model Garden's own format: its create_coco_tf_record.create_tf_example
     on each image of the train JSON, in the JSON's order, with the category ids
     mapped to 0..K-1 (a label map, as ours), so that its head has K outputs like ours;
  2. the experiment `retinanet_resnetfpn_coco` with the settings applied (model
     size, losses, parser augmentation, data order, SGD + warm-up + stepwise lr);
  3. the model built by RetinaNetTask.build_model with a seeded Keras initialization,
     written as OUT_DIR/init/ckpt (tf.train.Checkpoint(model=...), the layout of
     Model Garden's published checkpoints): the initial checkpoint we import;
  4. base_trainer.Trainer trains it one step per call, so that every step's
     losses are logged (total_loss, cls_loss, box_loss, model_loss, learning_rate);
  5. unless settings["eval"] is false: detections on the val images by the
     model's own detection generator (Model Garden's NMS settings), as a COCO
     results JSON (category ids of the val JSON).
Writes OUT_DIR/losses.json ({"steps": [{step, total_loss, cls_loss, box_loss,
model_loss, l2_loss, learning_rate}], "seconds", "versions", "config"}) and
OUT_DIR/detections.json.

--plot draws the loss curves of bench_training_parity.py's results.json (this
venv has matplotlib; the project's does not need it).
"""
from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402  (Keras 2, as Model Garden 2.16 builds with)

from official.core import base_trainer, exp_factory  # noqa: E402
from official.vision.configs import retinanet as retinanet_cfg  # noqa: E402,F401
from official.vision.data import create_coco_tf_record  # noqa: E402
from official.vision.ops import preprocess_ops  # noqa: E402
from official.vision.tasks import retinanet as retinanet_task  # noqa: E402

EXPERIMENT = "retinanet_resnetfpn_coco"


def write_records(annotations_path: str, image_dir: str, output_path: str) -> int:
  """Model Garden's tf.Examples of every image, in the JSON's order; category ids -> 0..K-1."""
  with open(annotations_path) as f:
    data = json.load(f)
  index_of = {c["id"]: i for i, c in enumerate(sorted(data["categories"], key=lambda c: c["id"]))}
  names = {index_of[c["id"]]: c["name"] for c in data["categories"]}
  by_image = {}
  for ann in data["annotations"]:
    ann = dict(ann, category_id=index_of[ann["category_id"]])
    by_image.setdefault(ann["image_id"], []).append(ann)
  with tf.io.TFRecordWriter(output_path) as writer:
    for image in data["images"]:
      example, _ = create_coco_tf_record.create_tf_example(
          image, [image_dir], bbox_annotations=by_image.get(image["id"], []), id_to_name_map=names)
      writer.write(example.SerializeToString())
  return len(data["images"])


def experiment(settings: dict, train_records: str):
  """retinanet_resnetfpn_coco with the matched settings applied."""
  s = settings
  config = exp_factory.get_exp_config(EXPERIMENT)
  config.runtime.mixed_precision_dtype = "float32"
  task = config.task
  task.init_checkpoint = None
  model = task.model
  model.num_classes = s["num_classes"]
  model.input_size = [s["image_size"], s["image_size"], 3]
  model.min_level, model.max_level = s["min_level"], s["max_level"]
  model.anchor.anchor_size = s["anchor_size"]
  model.backbone.resnet.model_id = s["depth"]
  model.backbone.resnet.depth_multiplier = s["width_multiplier"]
  model.decoder.fpn.num_filters = s["fpn_channels"]
  model.head.num_filters = s["head_channels"]
  model.head.num_convs = s["head_convs"]
  model.norm_activation.norm_momentum = s["bn_momentum"]
  model.norm_activation.norm_epsilon = s["bn_epsilon"]
  model.detection_generator.pre_nms_score_threshold = s["eval_score_threshold"]
  losses = task.losses
  losses.focal_loss_alpha, losses.focal_loss_gamma = s["focal_alpha"], s["focal_gamma"]
  losses.huber_loss_delta, losses.box_loss_weight = s["huber_delta"], s["box_loss_weight"]
  losses.l2_weight_decay = s["l2_weight_decay"]
  data = task.train_data
  data.input_path = train_records
  data.global_batch_size = s["batch_size"]
  data.dtype = "float32"
  data.shuffle_buffer_size = 1  # the records' order, as ours with shuffle_buffer 1
  data.cycle_length = 1
  data.deterministic = True
  data.seed = s["seed"]
  data.parser.aug_rand_hflip = s["horizontal_flip"]
  data.parser.aug_scale_min, data.parser.aug_scale_max = s["scale_min"], s["scale_max"]
  data.parser.match_threshold = s["positive_iou"]
  data.parser.unmatched_threshold = s["negative_iou"]
  optimizer = config.trainer.optimizer_config
  optimizer.optimizer.sgd.momentum = s["momentum"]
  optimizer.learning_rate.stepwise.boundaries = s["boundaries"]
  optimizer.learning_rate.stepwise.values = s["learning_rates"]
  optimizer.warmup.linear.warmup_steps = s["warmup_steps"]
  optimizer.warmup.linear.warmup_learning_rate = s["warmup_learning_rate"]
  config.trainer.train_steps = s["steps"]
  return config


def train(config, settings: dict, out_dir: str):
  """Builds, checkpoints and trains the model; returns (model, per-step logs, seconds)."""
  task = retinanet_task.RetinaNetTask(config.task)
  tf_keras.utils.set_random_seed(settings["seed"])
  model = task.build_model()
  size = settings["image_size"]
  model(tf.zeros([1, size, size, 3]), training=False)
  tf.train.Checkpoint(model=model).write(os.path.join(out_dir, "init", "ckpt"))
  optimizer = task.create_optimizer(config.trainer.optimizer_config, config.runtime)
  trainer = base_trainer.Trainer(config, task, model=model, optimizer=optimizer, train=True,
                                 evaluate=False)
  steps = []
  start = time.perf_counter()
  for step in range(1, settings["steps"] + 1):
    logs = trainer.train(tf.constant(1, tf.int32))
    row = {k: float(logs[k]) for k in ("total_loss", "cls_loss", "box_loss", "model_loss",
                                       "learning_rate")}
    row["l2_loss"] = row["total_loss"] - row["model_loss"]
    steps.append(dict(step=step, **row))
    if step == 1 or step % 50 == 0 or step == settings["steps"]:
      print(f"modelgarden step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in row.items()),
            flush=True)
  return model, steps, time.perf_counter() - start


def detect(model, settings: dict, annotations_path: str, image_dir: str) -> list:
  """COCO results of the val images: Model Garden's eval preprocessing and detection generator."""
  with open(annotations_path) as f:
    data = json.load(f)
  category_ids = sorted(c["id"] for c in data["categories"])
  size = settings["image_size"]
  results = []
  run = tf.function(lambda images, shape: model(images, image_shape=shape, training=False))
  for image in data["images"]:
    encoded = tf.io.read_file(os.path.join(image_dir, image["file_name"]))
    pixels = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    normalized = preprocess_ops.normalize_image(pixels)
    resized, info = preprocess_ops.resize_and_crop_image(normalized, [size, size], [size, size])
    out = run(resized[None], info[1][None])
    scale = info[2].numpy()  # [y, x] scale of the resize
    n = int(out["num_detections"][0])
    for box, score, cls in zip(out["detection_boxes"][0][:n].numpy(),
                               out["detection_scores"][0][:n].numpy(),
                               out["detection_classes"][0][:n].numpy()):
      y0, x0, y1, x1 = box / np.array([scale[0], scale[1], scale[0], scale[1]])
      results.append({"image_id": image["id"], "category_id": category_ids[int(cls)],
                      "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                      "score": float(score)})
  return results


def plot(results_path: str, png_path: str) -> None:
  """One panel per loss term: every seed's curve, Model Garden solid, ours dashed."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  with open(results_path) as f:
    runs = json.load(f)["runs"]
  terms = (("class (focal)", "cls_loss", "class_loss"), ("box (Huber)", "box_loss", "box_loss"),
           ("L2", "l2_loss", "l2_regularization"), ("total", "total_loss", "total_loss"))
  fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
  for ax, (title, mg_key, ours_key) in zip(axes.flat, terms):
    for k, run in enumerate(runs):
      colour = f"C{k}"
      mg, ours = run["losses"]["modelgarden"], run["losses"]["ours"]
      ax.plot([r["step"] for r in mg], [r[mg_key] for r in mg], colour, lw=1.2,
              label=f"Model Garden, seed {run['seed']}")
      ax.plot([r["step"] for r in ours], [r[ours_key] for r in ours], colour, ls="--", lw=1.2,
              label=f"ours, seed {run['seed']}")
    ax.set_title(title)
    ax.set_xlabel("step")
    if title != "L2":
      ax.set_yscale("log")
    ax.grid(alpha=0.3)
  axes.flat[0].legend(fontsize=7)
  fig.suptitle("Training losses: Model Garden (solid) and ours (dashed), same data, "
               "initial checkpoint and settings")
  fig.tight_layout()
  fig.savefig(png_path, dpi=90)


def main(settings_path: str, out_dir: str) -> int:
  with open(settings_path) as f:
    settings = json.load(f)
  tf.config.threading.set_intra_op_parallelism_threads(settings.get("threads", 0))
  os.makedirs(out_dir, exist_ok=True)
  train_records = os.path.join(out_dir, "train.tfrecord")
  write_records(settings["train_annotations"], settings["train_images"], train_records)
  config = experiment(settings, train_records)
  model, steps, seconds = train(config, settings, out_dir)
  if settings.get("eval", True):
    detections = detect(model, settings, settings["val_annotations"], settings["val_images"])
    with open(os.path.join(out_dir, "detections.json"), "w") as f:
      json.dump(detections, f)
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  with open(os.path.join(out_dir, "losses.json"), "w") as f:
    json.dump({"steps": steps, "seconds": seconds, "config": config.as_dict(),
               "versions": {"tf-models-official": metadata.version("tf-models-official"),
                            "tensorflow": tf.__version__}}, f, indent=1, default=str)
  return 0


if __name__ == "__main__":
  if len(sys.argv) == 4 and sys.argv[1] == "--plot":
    plot(sys.argv[2], sys.argv[3])
    sys.exit(0)
  if len(sys.argv) != 3:
    sys.exit(__doc__)
  sys.exit(main(sys.argv[1], sys.argv[2]))
