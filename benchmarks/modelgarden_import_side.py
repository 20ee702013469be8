"""Model Garden side of the checkpoint-import check: a RetinaNet checkpoint and its outputs.

    <modelgarden venv>/bin/python benchmarks/modelgarden_import_side.py --size reduced OUT_DIR
    <modelgarden venv>/bin/python benchmarks/modelgarden_import_side.py --size full OUT_DIR

Runs ONLY in the Model Garden venv (tf-models-official 2.16.0); imports nothing
from this repository. Builds Model Garden's own `retinanet_resnetfpn_coco`
model (ResNet-50 FPN, levels 3-7, 9 anchors, 91 classes, batch norm in FPN and
heads), with every variable random (batch-norm moving statistics included, so
that inference-mode batch norm is exercised), and writes into OUT_DIR:
  ckpt.*        tf.train.Checkpoint(model=model).write(...): the layout of Model
                Garden's published checkpoints (keys "model/_backbone/...").
  outputs.npz   images [N, H, W, 3] (already normalized, as the model sees them),
                cls_<level> and box_<level>: model(images, training=False)'s raw
                per-level outputs [N, H_l, W_l, A * K]; decoded_<level>: the box
                outputs decoded on Model Garden's anchors by its box_ops.decode_boxes, the
                input of its NMS, [N, H_l * W_l * A, 4] yxyx pixels.
  model_config.json  Model Garden's model config.
Sizes: "full" = the published architecture at 640x640; "reduced" = depth
multiplier 0.125, 16-channel FPN and heads with 2 convs, 128x128 input: a
checkpoint of about 2 MB, committed as the test fixture tests/fixtures/modelgarden_retinanet/.
"imagenet-reduced": Model Garden's ImageNet classifier (`resnet_imagenet`, ResNet-50 at depth
multiplier 0.125, 1000 classes) instead, the layout of its published ImageNet checkpoints;
outputs.npz then holds the backbone's endpoints c3, c4, c5 (fixture
tests/fixtures/modelgarden_resnet_imagenet/).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402  (Keras 2, as Model Garden 2.16 builds with)

from official.core import exp_factory  # noqa: E402
from official.vision.configs import retinanet as retinanet_cfg  # noqa: E402,F401
from official.vision.modeling import factory  # noqa: E402
from official.vision.ops import anchor as anchor_lib  # noqa: E402
from official.vision.ops import box_ops  # noqa: E402

EXPERIMENT = "retinanet_resnetfpn_coco"


def model_config(size: str):
  config = exp_factory.get_exp_config(EXPERIMENT).task.model
  if size == "reduced":
    config.backbone.resnet.depth_multiplier = 0.125
    config.decoder.fpn.num_filters = 16
    config.head.num_filters = 16
    config.head.num_convs = 2
    config.input_size = [128, 128, 3]
  return config


def imagenet_classifier(seed: int, args_dir: str, num_images: int) -> None:
  """The "imagenet-reduced" fixture: checkpoint of the classifier, backbone endpoints."""
  config = exp_factory.get_exp_config("resnet_imagenet").task.model
  config.backbone.resnet.model_id = 50
  config.backbone.resnet.depth_multiplier = 0.125
  size = 128
  model = factory.build_classification_model(
      tf_keras.layers.InputSpec(shape=[None, size, size, 3]), config)
  images = np.random.default_rng(seed + 1).normal(0, 1, [num_images, size, size, 3]).astype(
      np.float32)
  model(images, training=False)
  rng = np.random.default_rng(seed)
  for v in model.variables:
    if "gamma" in v.name:
      v.assign(rng.uniform(0.5, 1.5, v.shape).astype(np.float32))
    elif "moving_variance" in v.name:
      v.assign(rng.uniform(0.5, 2.0, v.shape).astype(np.float32))
    elif "beta" in v.name or "moving_mean" in v.name:
      v.assign(rng.normal(0.0, 0.1, v.shape).astype(np.float32))
  endpoints = model.backbone(images, training=False)
  os.makedirs(args_dir, exist_ok=True)
  tf.train.Checkpoint(model=model).write(os.path.join(args_dir, "ckpt"))
  np.savez_compressed(os.path.join(args_dir, "outputs.npz"), images=images,
                      **{f"c{level}": endpoints[str(level)].numpy() for level in (3, 4, 5)})
  with open(os.path.join(args_dir, "model_config.json"), "w") as f:
    json.dump(config.as_dict(), f, indent=1, sort_keys=True)
  print(json.dumps({"variables": len(model.variables)}))


def randomize(model: tf_keras.Model, seed: int) -> None:
  """Every variable random with realistic magnitudes: conv kernels keep Model Garden's own
  random initialization except the two prediction convs (N(0, 0.01) instead of ~1e-5),
  biases N(0, 0.05), BN gamma ~ U(0.5, 1.5), beta / moving mean N(0, 0.1), moving
  variance ~ U(0.5, 2)."""
  rng = np.random.default_rng(seed)
  head = model.head
  predictions = {id(head._classifier.kernel), id(head._box_regressor.kernel)}  # pylint: disable=protected-access
  for v in model.variables:
    shape = v.shape.as_list()
    name = v.name
    if id(v) in predictions:
      v.assign(rng.normal(0.0, 0.01, shape).astype(np.float32))
      continue
    if "kernel" in name:
      continue
    if "gamma" in name:
      value = rng.uniform(0.5, 1.5, shape)
    elif "moving_variance" in name:
      value = rng.uniform(0.5, 2.0, shape)
    elif "beta" in name or "moving_mean" in name:
      value = rng.normal(0.0, 0.1, shape)
    else:  # biases
      value = rng.normal(0.0, 0.05, shape)
    v.assign(value.astype(np.float32))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("output_dir")
  parser.add_argument("--size", choices=("reduced", "full", "imagenet-reduced"),
                      default="reduced")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num_images", type=int, default=1)
  args = parser.parse_args(argv)
  tf_keras.utils.set_random_seed(args.seed)  # Model Garden's own kernel initialization
  if args.size == "imagenet-reduced":
    imagenet_classifier(args.seed, args.output_dir, args.num_images)
    return 0
  config = model_config(args.size)
  h, w, _ = config.input_size
  model = factory.build_retinanet(tf_keras.layers.InputSpec(shape=[None, h, w, 3]), config,
                                  l2_regularizer=None)
  images = np.random.default_rng(args.seed + 1).normal(0, 1, [args.num_images, h, w, 3]).astype(np.float32)
  model(images, training=False)
  randomize(model, args.seed)
  outputs = model(images, training=False)
  os.makedirs(args.output_dir, exist_ok=True)
  tf.train.Checkpoint(model=model).write(os.path.join(args.output_dir, "ckpt"))
  arrays = {"images": images}
  for kind, key in (("cls", "cls_outputs"), ("box", "box_outputs")):
    for level, value in outputs[key].items():
      arrays[f"{kind}_{level}"] = value.numpy()
  anchors = anchor_lib.Anchor(config.min_level, config.max_level, config.anchor.num_scales,
                              config.anchor.aspect_ratios, config.anchor.anchor_size, (h, w))
  for level, boxes in outputs["box_outputs"].items():
    n = boxes.shape[0]
    level_anchors = tf.reshape(anchors.multilevel_boxes[level], [1, -1, 4])
    arrays[f"decoded_{level}"] = box_ops.decode_boxes(tf.reshape(boxes, [n, -1, 4]),
                                                      level_anchors).numpy()
  np.savez_compressed(os.path.join(args.output_dir, "outputs.npz"), **arrays)
  with open(os.path.join(args.output_dir, "model_config.json"), "w") as f:
    json.dump(config.as_dict(), f, indent=1, sort_keys=True)
  params = sum(v.shape.num_elements() for v in model.trainable_variables)
  print(json.dumps({"trainable_parameters": params, "variables": len(model.variables),
                    "versions": {"tensorflow": tf.__version__}}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
