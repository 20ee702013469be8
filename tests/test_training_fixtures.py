"""Shared helpers of the training tests (no tests here): tiny configs and records.

Records come from data.sample_data (seeded shapes) encoded with
data.example_codec, written as plain TFRecords, so every test reads real
Examples through the real input pipeline.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import tensorflow as tf

from retinanet import config as config_lib


def write_sample_records(directory: str, num_images: int = 16, image_size=(128, 128),
                         seed: int = 0, num_shards: int = 2) -> str:
  """Writes `num_images` shape images as TFRecords; returns their glob."""
  from data import example_codec, sample_data  # pylint: disable=g-import-not-at-top
  from retinanet import coco  # pylint: disable=g-import-not-at-top
  dataset = sample_data.generate_sample_dataset(os.path.join(directory, "raw"),
                                                num_train=num_images, num_val=0,
                                                image_size=image_size, seed=seed)
  ann_path, image_dir = dataset.splits["train"]
  with open(ann_path) as f:
    data = json.load(f)
  label_map = coco.LabelMap.from_categories(data["categories"])
  by_image = {}
  for ann in data["annotations"]:
    by_image.setdefault(ann["image_id"], []).append(ann)
  paths = [os.path.join(directory, f"train-{i:05d}-of-{num_shards:05d}.tfrecord")
           for i in range(num_shards)]
  writers = [tf.io.TFRecordWriter(p) for p in paths]
  for i, image in enumerate(data["images"]):
    with open(os.path.join(image_dir, image["file_name"]), "rb") as f:
      image_bytes = f.read()
    example, _ = example_codec.build_example(image_bytes, image, by_image.get(image["id"], []),
                                             label_map)
    writers[i % num_shards].write(example.SerializeToString())
  for w in writers:
    w.close()
  return os.path.join(directory, "train-*.tfrecord")


def tiny_config(overrides: Sequence[str] = (), **train) -> config_lib.ExperimentConfig:
  """ResNet-18 x0.25 (16..128 channels), 64 px, levels 3..5, 16-channel FPN and 2 head
  convs; deterministic input."""
  base = config_lib.ExperimentConfig()
  values = [
      "model.num_classes=5", "model.input_size=[64,64]", "model.backbone.depth=18",
      "model.backbone.freeze_stem_and_first_stage=false", "model.backbone.width_multiplier=0.25",
      "model.fpn.min_level=3",
      "model.fpn.max_level=5", "model.fpn.num_channels=16", "model.head.num_channels=16",
      "model.head.num_convs=2", "model.anchors.scales_per_octave=1",
      "model.anchors.aspect_ratios=[1.0]", "model.anchors.anchor_size=3.0",
      "input.deterministic=true", "input.shuffle_buffer=8", "input.scale_min=0.8",
      "input.scale_max=1.2", "input.max_instances=10",
      "optimizer.base_learning_rate=0.01", "optimizer.warmup_steps=2",
      "optimizer.warmup_learning_rate=0.001", "optimizer.boundaries=[]",
      "optimizer.decay_rates=[]",
      "train.global_batch_size=4", "train.total_steps=6", "train.steps_per_execution=2",
      "train.log_every=2", "train.checkpoint_every=3",
  ]
  values += [f"train.{k}={json.dumps(v)}" for k, v in train.items()]
  return config_lib.apply_overrides(base, values + list(overrides))
