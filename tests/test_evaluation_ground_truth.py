"""COCO AP is computed against the original annotations, not the truncated records.

An image with more objects than input.max_instances is converted, then scored
with a model whose outputs are exactly its ground truth: against the data
stage's ground-truth JSON every object counts (AP 1); against ground truth read
back from the records, the objects beyond max_instances are lost and the
correct detections of them count as false positives.
"""
import json
import logging
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from data import convert
from retinanet import coco
from retinanet import config as config_lib
from retinanet import factory
from retinanet.evaluation import evaluate_model
from retinanet.ops import box_coder, box_ops

SIDE = 64
# Five 12 x 12 squares, [x, y, w, h] (COCO), all of category 7.
BOXES_XYWH = [[2, 2, 12, 12], [30, 2, 12, 12], [2, 30, 12, 12], [30, 30, 12, 12],
              [48, 48, 12, 12]]
MAX_INSTANCES = 2


def _dataset(root):
  image_dir = os.path.join(root, "images")
  os.makedirs(image_dir)
  pixels = np.zeros((SIDE, SIDE, 3), np.uint8)
  for x, y, w, h in BOXES_XYWH:
    pixels[y:y + h, x:x + w] = 255
  Image.fromarray(pixels).save(os.path.join(image_dir, "many.png"))
  annotations = [{"id": 100 + i, "image_id": 42, "category_id": 7, "bbox": box,
                  "area": float(box[2] * box[3]), "iscrowd": 0}
                 for i, box in enumerate(BOXES_XYWH)]
  data = {"images": [{"id": 42, "file_name": "many.png", "height": SIDE, "width": SIDE}],
          "annotations": annotations, "categories": [{"id": 7, "name": "square"}]}
  path = os.path.join(root, "instances_val.json")
  with open(path, "w") as f:
    json.dump(data, f)
  return {"val": (path, image_dir)}


def _config():
  c = config_lib.ExperimentConfig()
  m = c.model
  m.num_classes, m.input_size = 1, (SIDE, SIDE)
  m.backbone.depth, m.backbone.width_multiplier = 18, 0.25
  m.fpn.min_level, m.fpn.max_level, m.fpn.num_channels = 3, 4, 8
  m.head.num_convs, m.head.num_channels = 1, 8
  m.anchors.anchor_size, m.anchors.scales_per_octave, m.anchors.aspect_ratios = 1.5, 1, (1.0,)
  c.input.max_instances = MAX_INSTANCES
  c.eval.batch_size = 1
  config_lib.validate(c)
  return c


class PerfectModel(tf.Module):
  """Outputs that decode to exactly the ground-truth boxes, score sigmoid(10)."""

  def __init__(self, model_config):
    super().__init__()
    anchors = factory.build_anchors(model_config).boxes()
    gt = box_ops.box_convert(tf.constant(BOXES_XYWH, tf.float32), "xywh", "yxyx")
    best = tf.argmax(box_ops.pairwise_iou_yxyx(anchors, gt), axis=0).numpy()
    n = anchors.shape[0]
    logits = np.full([n, 1], -10.0, np.float32)
    logits[best] = 10.0
    deltas = np.zeros([n, 4], np.float32)
    deltas[best] = box_coder.encode(gt, tf.gather(anchors, best),
                                    model_config.box_variances).numpy()
    self._logits, self._deltas = tf.constant(logits), tf.constant(deltas)

  def __call__(self, images, training=False):
    batch = tf.shape(images)[0]
    return {"class_outputs": tf.tile(self._logits[None], [batch, 1, 1]),
            "box_outputs": tf.tile(self._deltas[None], [batch, 1, 1])}


def test_ap_counts_every_object_beyond_max_instances(tmp_path, caplog):
  splits = _dataset(str(tmp_path / "data"))
  result = convert.convert_coco(splits, str(tmp_path / "out"), num_shards=1,
                                beam_pipeline_args=["--direct_running_mode=in_memory"],
                                label_map_split="val")
  config = _config()
  label_map = coco.load_label_map(result.label_map_path)
  model = PerfectModel(config.model)
  pattern = os.path.join(result.split_dirs["val"], "*")
  truth = convert.ground_truth_path(result.output_dir, "val")

  against_json = evaluate_model.evaluate(model, config, pattern, label_map,
                                         ground_truth_path=truth)
  assert len(against_json.detections) == len(BOXES_XYWH) > MAX_INSTANCES
  assert against_json.metrics["AP"] == 1.0 and against_json.metrics["ARmax100"] == 1.0
  assert against_json.per_class_ap[0]["num_ground_truth"] == len(BOXES_XYWH)

  with caplog.at_level(logging.WARNING, logger="retinanet.evaluation.evaluate_model"):
    against_records = evaluate_model.evaluate(model, config, pattern, label_map)
  # Only MAX_INSTANCES objects survive in the records: 3 correct boxes become false positives.
  assert against_records.per_class_ap[0]["num_ground_truth"] == MAX_INSTANCES
  assert against_records.metrics["AP"] < 0.9
  assert "lost 3 objects beyond input.max_instances=2" in caplog.text
