"""Model Garden side of bench_modelgarden_parity.py: targets and losses by TF Model Garden itself.

    <modelgarden venv>/bin/python benchmarks/modelgarden_side.py IN.npz OUT.npz

Runs ONLY in the Model Garden venv (tf-models-official 2.16.0), never in the
project's: it imports nothing from this repository. bench_modelgarden_parity.py
writes IN.npz and reads OUT.npz.

IN.npz: image_size [2]; num_images; boxes_<i> [M_i, 4] float32 yxyx pixels and
classes_<i> [M_i] int32 of image i; class_logits [B, N, C] and box_outputs
[B, N, 4] float32, flat over anchors in the order (level, y, x, anchor).

Everything is Model Garden's own code, configured from the registered
`retinanet_resnetfpn_coco` experiment:
  * targets: retinanet_input.Parser._parse_train_data (the training parser:
    crowd skipping, empty-box filtering, anchor generator, AnchorLabeler), with
    the config's augmentations turned off (no flip, scale jitter 1.0) so that
    the 640x640 input maps to itself;
  * a cross-check: anchor.AnchorLabeler called directly on the pixel boxes, and
    the anchors of anchor.Anchor (the class the model's detection generator uses);
  * losses: RetinaNetTask.build_losses on the batched parser labels and the given
    predictions, reshaped into Model Garden's per-level [B, H, W, A * K] layout.

OUT.npz: config (JSON), anchors [N, 4] (parser), anchors_anchor_class [N, 4],
cls_targets / cls_weights / box_weights [B, N], box_targets [B, N, 4],
direct_box_targets [B, N, 4] and direct_cls_targets [B, N] (AnchorLabeler
called directly), losses (total_loss, cls_loss, box_loss, model_loss), versions.
"""
from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from official.core import exp_factory  # noqa: E402
from official.vision.configs import retinanet as retinanet_cfg  # noqa: E402,F401  (registers the experiment)
from official.vision.dataloaders import retinanet_input  # noqa: E402
from official.vision.ops import anchor as anchor_lib  # noqa: E402
from official.vision.tasks import retinanet as retinanet_task  # noqa: E402

EXPERIMENT = "retinanet_resnetfpn_coco"


def flatten_levels(per_level: dict, last_dim: int = 0) -> np.ndarray:
  """{level: [..., H, W, A * K]} -> [..., N] (last_dim 0) or [..., N, K], levels in key order."""
  parts = []
  for value in per_level.values():
    value = np.asarray(value)
    lead = value.shape[:-3]
    parts.append(value.reshape(lead + ((-1,) if not last_dim else (-1, last_dim))))
  return np.concatenate(parts, axis=len(parts[0].shape) - (1 if not last_dim else 2))


def split_levels(flat: np.ndarray, level_shapes: dict, per_anchor: int) -> dict:
  """[B, N, K] -> {level: [B, H, W, A * K]} with (H, W, A) from level_shapes."""
  out, start = {}, 0
  for level, (h, w, a) in level_shapes.items():
    count = h * w * a
    out[level] = tf.constant(flat[:, start:start + count].reshape(flat.shape[0], h, w, a * per_anchor))
    start += count
  if start != flat.shape[1]:
    raise ValueError(f"predictions have {flat.shape[1]} anchors, Model Garden has {start}")
  return out


def main(in_path: str, out_path: str) -> None:
  inputs = np.load(in_path)
  image_h, image_w = (int(v) for v in inputs["image_size"])
  num_images = int(inputs["num_images"])

  config = exp_factory.get_exp_config(EXPERIMENT)
  task_cfg = config.task
  model_cfg = task_cfg.model
  parser_cfg = task_cfg.train_data.parser
  if list(model_cfg.input_size[:2]) != [image_h, image_w]:
    raise ValueError(f"{EXPERIMENT} input size {model_cfg.input_size} != {image_h}x{image_w}")

  # The training parser as RetinaNetTask.build_inputs builds it, augmentation off.
  parser = retinanet_input.Parser(
      output_size=model_cfg.input_size[:2],
      min_level=model_cfg.min_level,
      max_level=model_cfg.max_level,
      num_scales=model_cfg.anchor.num_scales,
      aspect_ratios=model_cfg.anchor.aspect_ratios,
      anchor_size=model_cfg.anchor.anchor_size,
      dtype="float32",
      match_threshold=parser_cfg.match_threshold,
      unmatched_threshold=parser_cfg.unmatched_threshold,
      box_coder_weights=model_cfg.detection_generator.box_coder_weights,
      aug_type=None,
      aug_rand_hflip=False,
      aug_scale_min=1.0,
      aug_scale_max=1.0,
      skip_crowd_during_training=parser_cfg.skip_crowd_during_training,
      max_num_instances=parser_cfg.max_num_instances,
      pad=parser_cfg.pad,
      keep_aspect_ratio=parser_cfg.keep_aspect_ratio)
  parse = parser.parse_fn(is_training=True)
  labeler = anchor_lib.AnchorLabeler(
      match_threshold=parser_cfg.match_threshold,
      unmatched_threshold=parser_cfg.unmatched_threshold,
      box_coder_weights=model_cfg.detection_generator.box_coder_weights)

  per_image, direct_cls, direct_box = [], [], []
  anchor_dict = None
  for i in range(num_images):
    boxes = inputs[f"boxes_{i}"].astype(np.float32).reshape(-1, 4)
    classes = inputs[f"classes_{i}"].astype(np.int64).reshape(-1)
    scale = np.array([image_h, image_w, image_h, image_w], np.float32)
    decoded = {
        "image": tf.zeros([image_h, image_w, 3], tf.uint8),
        "groundtruth_boxes": tf.constant(boxes / scale),  # the decoder's normalized boxes
        "groundtruth_classes": tf.constant(classes),
        "groundtruth_is_crowd": tf.zeros([len(classes)], tf.bool),
    }
    _, labels = parse(decoded)
    per_image.append(labels)
    anchor_dict = labels["anchor_boxes"]
    cls_t, box_t, _, _, _ = labeler.label_anchors(
        anchor_dict, tf.constant(boxes), tf.constant(classes[:, None].astype(np.int32)))
    direct_cls.append(flatten_levels(cls_t))
    direct_box.append(flatten_levels(box_t, 4))

  batched = {
      key: tf.nest.map_structure(lambda *xs: tf.stack(xs, axis=0), *[l[key] for l in per_image])
      for key in ("cls_targets", "box_targets", "cls_weights", "box_weights")
  }
  level_shapes = {}
  for level, boxes in anchor_dict.items():
    h, w, a4 = boxes.shape.as_list()
    level_shapes[level] = (h, w, a4 // 4)

  class_logits = inputs["class_logits"].astype(np.float32)
  box_outputs = inputs["box_outputs"].astype(np.float32)
  outputs = {
      "cls_outputs": split_levels(class_logits, level_shapes, class_logits.shape[-1]),
      "box_outputs": split_levels(box_outputs, level_shapes, 4),
  }
  task = retinanet_task.RetinaNetTask(task_cfg)
  total_loss, cls_loss, box_loss, model_loss = task.build_losses(outputs=outputs, labels=batched)

  anchors = flatten_levels(anchor_dict, 4)
  anchor_class = anchor_lib.Anchor(
      min_level=model_cfg.min_level, max_level=model_cfg.max_level,
      num_scales=model_cfg.anchor.num_scales, aspect_ratios=model_cfg.anchor.aspect_ratios,
      anchor_size=model_cfg.anchor.anchor_size, image_size=(image_h, image_w))

  import official  # pylint: disable=g-import-not-at-top
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  info = {
      "experiment": EXPERIMENT,
      "input_size": list(model_cfg.input_size),
      "min_level": model_cfg.min_level,
      "max_level": model_cfg.max_level,
      "num_scales": model_cfg.anchor.num_scales,
      "aspect_ratios": list(model_cfg.anchor.aspect_ratios),
      "anchor_size": model_cfg.anchor.anchor_size,
      "num_classes": model_cfg.num_classes,
      "match_threshold": parser_cfg.match_threshold,
      "unmatched_threshold": parser_cfg.unmatched_threshold,
      "force_match_for_each_col": bool(labeler.matcher._force_match_for_each_col),  # pylint: disable=protected-access
      "box_coder_weights": model_cfg.detection_generator.box_coder_weights,
      "skip_crowd_during_training": parser_cfg.skip_crowd_during_training,
      "aug_rand_hflip (config; off here)": parser_cfg.aug_rand_hflip,
      "aug_scale (config; 1.0 here)": [parser_cfg.aug_scale_min, parser_cfg.aug_scale_max],
      "focal_loss_alpha": task_cfg.losses.focal_loss_alpha,
      "focal_loss_gamma": task_cfg.losses.focal_loss_gamma,
      "huber_loss_delta": task_cfg.losses.huber_loss_delta,
      "box_loss_weight": task_cfg.losses.box_loss_weight,
      "loss_weight": task_cfg.losses.loss_weight,
      "l2_weight_decay": task_cfg.losses.l2_weight_decay,
      "versions": {
          "tf-models-official": metadata.version("tf-models-official"),
          "tensorflow": tf.__version__,
          "tf-keras": metadata.version("tf-keras"),
          "official_path": os.path.dirname(official.__file__),
      },
  }
  np.savez(
      out_path,
      config=np.array(json.dumps(info)),
      anchors=anchors,
      anchors_anchor_class=anchor_class.boxes.numpy(),
      cls_targets=flatten_levels(batched["cls_targets"]),
      box_targets=flatten_levels(batched["box_targets"], 4),
      cls_weights=batched["cls_weights"].numpy(),
      box_weights=batched["box_weights"].numpy(),
      direct_cls_targets=np.stack(direct_cls),
      direct_box_targets=np.stack(direct_box),
      total_loss=float(total_loss),
      cls_loss=float(cls_loss),
      box_loss=float(box_loss),
      model_loss=float(model_loss),
  )


if __name__ == "__main__":
  if len(sys.argv) != 3:
    sys.exit(__doc__)
  main(sys.argv[1], sys.argv[2])
