"""Imports TF Model Garden RetinaNet checkpoints (ResNet-FPN, `retinanet_resnetfpn_coco`).

Model Garden's published COCO RetinaNets (ResNet-50 FPN at 640x640) are the same
network as ours built with `modelgarden_model_config`: padding "same", P6 from
P5, batch norm in the FPN and per level in the heads, 91 classes, 9 anchors.
The checkpoint is read with `tf.train.load_checkpoint` (no Model Garden
package needed) and every variable is mapped one to one, with shapes checked:

  model/_backbone/layer_with_weights-0          stem conv      backbone/stem_conv
  model/_backbone/layer_with_weights-1          stem BN        backbone/stem_bn
  model/_backbone/layer_with_weights-(2+j)/     j-th block     backbone/conv{S}_block{B}/
      _conv{k}, _norm{k} (k = 1..3)                            conv{k}, bn{k}
      _shortcut, _norm0                                        shortcut_conv, shortcut_bn
  model/_decoder/layer_with_weights-i           FPN layers in Keras' topological order
                                                (DECODER_ORDER): fpn/lateral_p{l},
                                                output_p{l}, coarse_p{l}, bn_p{l}
  model/_head/_cls_convs/{i}, _box_convs/{i}    class_head/conv{i+1}, box_head/conv{i+1}
  model/_head/_cls_norms/{level - 3}/{i}        class_head/bn{i+1}_p{level} (box alike)
  model/_head/_classifier, _box_regressor       class_head/prediction, box_head/prediction

Checkpoint keys may carry a prefix before "model/" or none (a bare model
checkpoint); the optimizer's slots are ignored. ResNet-18/34 are not importable:
Model Garden's basic-block stages always start with a projection shortcut,
ours (like torchvision's) only where the shape changes.
The 91 output classes are COCO's category ids 0..90 (0 is never a label; ids
unused by COCO keep their outputs); `coco91_label_map` names them.

The ResNet alone (`load_backbone_into`, `model.backbone.init_checkpoint=modelgarden:CKPT`)
comes from any Model Garden checkpoint holding one ResNet: an ImageNet classifier's
(`model/layer_with_weights-0/...`) or a detector's (`model/_backbone/...`).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from retinanet import coco
from retinanet import config as config_lib
from retinanet import layout

logger = logging.getLogger(__name__)

VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"
MODELGARDEN_NUM_CLASSES = 91
MIN_LEVEL, MAX_LEVEL = 3, 7
# Model Garden's FPN (a Keras functional model) checkpoints its layers in topological order.
DECODER_ORDER = ("lateral_5", "lateral_4", "post_hoc_5", "lateral_3", "coarser_6", "post_hoc_3",
                 "post_hoc_4", "coarser_7", "norm_3", "norm_4", "norm_5", "norm_6", "norm_7")
_DECODER_TO_OURS = {"lateral": "lateral_p", "post_hoc": "output_p", "coarser": "coarse_p",
                    "norm": "bn_p"}

# COCO 2017 category names by id (the 80 used ids).
COCO_NAMES = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train",
    8: "truck", 9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign",
    14: "parking meter", 15: "bench", 16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep",
    21: "cow", 22: "elephant", 23: "bear", 24: "zebra", 25: "giraffe", 27: "backpack",
    28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase", 34: "frisbee", 35: "skis",
    36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat", 40: "baseball glove",
    41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle", 46: "wine glass",
    47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple",
    54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza",
    60: "donut", 61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed",
    67: "dining table", 70: "toilet", 72: "tv", 73: "laptop", 74: "mouse", 75: "remote",
    76: "keyboard", 77: "cell phone", 78: "microwave", 79: "oven", 80: "toaster", 81: "sink",
    82: "refrigerator", 84: "book", 85: "clock", 86: "vase", 87: "scissors", 88: "teddy bear",
    89: "hair drier", 90: "toothbrush"}


class CheckpointMismatchError(ValueError):
  """The checkpoint does not match the model: the message names the variables."""


def coco91_label_map() -> coco.LabelMap:
  """Class index i = COCO category id i, for i in 0..90 (Model Garden's COCO head)."""
  names = ["background" if i == 0 else COCO_NAMES.get(i, f"unused_{i}")
           for i in range(MODELGARDEN_NUM_CLASSES)]
  return coco.LabelMap(category_ids=tuple(range(MODELGARDEN_NUM_CLASSES)), names=tuple(names))


def modelgarden_model_config(base: Optional[config_lib.ModelConfig] = None, *, depth: int = 50,
                             width_multiplier: float = 1.0, fpn_channels: int = 256,
                             head_channels: int = 256, head_convs: int = 4,
                             input_size: Tuple[int, int] = (640, 640)) -> config_lib.ModelConfig:
  """Our model config of Model Garden's `retinanet_resnetfpn_coco` architecture."""
  m = base if base is not None else config_lib.ModelConfig()
  return dataclasses.replace(
      m, num_classes=MODELGARDEN_NUM_CLASSES, input_size=tuple(input_size), padding="same",
      backbone=dataclasses.replace(m.backbone, depth=depth, width_multiplier=width_multiplier,
                                   stride_in_1x1=False),
      fpn=dataclasses.replace(m.fpn, min_level=MIN_LEVEL, max_level=MAX_LEVEL,
                              num_channels=fpn_channels, p6_source="p5", use_batch_norm=True,
                              use_group_norm=False),
      head=dataclasses.replace(m.head, num_convs=head_convs, num_channels=head_channels,
                               use_batch_norm=True, use_group_norm=False),
      anchors=dataclasses.replace(m.anchors, anchor_size=4.0, scales_per_octave=3,
                                  aspect_ratios=(0.5, 1.0, 2.0)))


def _layer_vars(layer, key: str) -> List[Tuple[tf.Variable, str]]:
  """(variable, checkpoint key) of a conv (kernel, bias) or batch norm layer."""
  names = ("gamma", "beta", "moving_mean", "moving_variance") if hasattr(layer, "gamma") else (
      ("kernel", "bias") if getattr(layer, "bias", None) is not None else ("kernel",))
  return [(getattr(layer, n), f"{key}/{n}{VALUE}") for n in names]


def backbone_mapping(backbone, root: str) -> List[Tuple[tf.Variable, str]]:
  """Our ResNet's variables with their keys under a Model Garden ResNet at `root`
  ("model/_backbone/" in a RetinaNet checkpoint, "model/layer_with_weights-0/" in an
  ImageNet classifier's)."""
  if backbone.depth in (18, 34):
    raise CheckpointMismatchError(
        "ResNet-18/34 checkpoints of Model Garden are not importable: its basic-block stages "
        "start with a projection shortcut that this ResNet lacks")
  b = f"{root}layer_with_weights-"
  pairs = _layer_vars(backbone.stem_conv, f"{b}0") + _layer_vars(backbone.stem_bn, f"{b}1")
  index = 2
  for stage in range(2, 6):
    for block in backbone.blocks(stage):
      key = f"{b}{index}"
      for k in range(1, len(block.kernel_sizes_and_strides) + 1):
        pairs += _layer_vars(getattr(block, f"conv{k}"), f"{key}/_conv{k}")
        pairs += _layer_vars(getattr(block, f"bn{k}"), f"{key}/_norm{k}")
      if block.shortcut_conv is not None:
        pairs += _layer_vars(block.shortcut_conv, f"{key}/_shortcut")
        pairs += _layer_vars(block.shortcut_bn, f"{key}/_norm0")
      index += 1
  return pairs


def variable_mapping(model, prefix: str = "model/") -> List[Tuple[tf.Variable, str]]:
  """Every variable of our (built) model with its key in a Model Garden checkpoint."""
  fpn = model.fpn
  if fpn.min_level != MIN_LEVEL or fpn.max_level != MAX_LEVEL:
    raise CheckpointMismatchError(
        f"Model Garden RetinaNet checkpoints have levels {MIN_LEVEL}-{MAX_LEVEL}; this model "
        f"has {fpn.min_level}-{fpn.max_level}")
  pairs = backbone_mapping(model.backbone, f"{prefix}_backbone/")
  for i, name in enumerate(DECODER_ORDER):
    kind, level = name.rsplit("_", 1)
    pairs += _layer_vars(getattr(fpn, f"{_DECODER_TO_OURS[kind]}{level}"),
                         f"{prefix}_decoder/layer_with_weights-{i}")
  for head, mg in ((model.class_head, "cls"), (model.box_head, "box")):
    for i in range(head.num_convs):
      pairs += _layer_vars(getattr(head, f"conv{i + 1}"), f"{prefix}_head/_{mg}_convs/{i}")
      for level in range(MIN_LEVEL, MAX_LEVEL + 1):
        pairs += _layer_vars(getattr(head, f"bn{i + 1}_p{level}"),
                             f"{prefix}_head/_{mg}_norms/{level - MIN_LEVEL}/{i}")
    final = "_classifier" if mg == "cls" else "_box_regressor"
    pairs += _layer_vars(head.prediction, f"{prefix}_head/{final}")
  return pairs


def find_prefix(keys: Sequence[str]) -> str:
  """The part of the checkpoint keys before "_backbone/" ("model/" in Model Garden's)."""
  for key in keys:
    match = re.match(r"^(.*?)_backbone/layer_with_weights-0/kernel" + re.escape(VALUE) + "$", key)
    if match:
      return match.group(1)
  raise CheckpointMismatchError("not a Model Garden RetinaNet checkpoint: no key "
                     f"'.../_backbone/layer_with_weights-0/kernel{VALUE}' (first keys: "
                     f"{sorted(keys)[:3]})")


def _assign(pairs: List[Tuple[tf.Variable, str]], reader, model_keys, checkpoint: str
            ) -> Dict[str, int]:
  """Checks every (variable, key) pair against the checkpoint, then assigns them all.

  Raises CheckpointMismatchError naming the first variables that are missing or differ in
  shape, and the checkpoint's `model_keys` that were left unused.
  """
  shapes = reader.get_variable_to_shape_map()
  missing = [key for _, key in pairs if key not in shapes]
  wrong = [f"{key}: checkpoint {shapes[key]} vs model {var.shape.as_list()}"
           for var, key in pairs if key in shapes and list(shapes[key]) != var.shape.as_list()]
  unused = sorted(set(model_keys) - {key for _, key in pairs})
  if missing or wrong or unused:
    parts = []
    if wrong:
      parts.append(f"{len(wrong)} shapes differ, first: {wrong[:3]}")
    if missing:
      parts.append(f"{len(missing)} variables missing from the checkpoint, first: {missing[:3]}")
    if unused:
      parts.append(f"{len(unused)} checkpoint variables have no place in the model, first: "
                   f"{unused[:3]}")
    raise CheckpointMismatchError(f"{checkpoint} does not match the model ({len(pairs)} variables): "
                       + "; ".join(parts))
  for var, key in pairs:
    var.assign(reader.get_tensor(key).astype(var.dtype.as_numpy_dtype))
  return {"variables": len(pairs),
          "parameters": int(sum(np.prod(var.shape.as_list()) for var, _ in pairs))}


def load_into(model, checkpoint: str) -> Dict[str, int]:
  """Assigns a Model Garden RetinaNet checkpoint to our built model; every variable must match
  (CheckpointMismatchError naming the variables otherwise)."""
  reader = tf.train.load_checkpoint(checkpoint)
  shapes = reader.get_variable_to_shape_map()
  prefix = find_prefix(list(shapes))
  model_keys = [key for key in shapes if key.startswith(prefix) and key.endswith(VALUE) and
                any(part in key for part in ("_backbone/", "_decoder/", "_head/"))]
  return _assign(variable_mapping(model, prefix), reader, model_keys, checkpoint)


_STEM_KERNEL = "layer_with_weights-0/kernel" + VALUE


def find_backbone_root(shapes) -> str:
  """The key prefix of the one ResNet in a checkpoint: where its 7x7x3 stem conv sits."""
  roots = [key[:-len(_STEM_KERNEL)] for key, shape in shapes.items()
           if key.endswith(_STEM_KERNEL) and list(shape)[:3] == [7, 7, 3]]
  if len(roots) != 1:
    raise CheckpointMismatchError(
        f"expected one Model Garden ResNet (a 7x7x3 stem conv '.../{_STEM_KERNEL}'), found "
        f"{len(roots)}: {roots[:3]}")
  return roots[0]


def load_backbone_into(backbone, checkpoint: str) -> Dict[str, int]:
  """Assigns the ResNet of a Model Garden checkpoint (an ImageNet classifier's or a
  detector's) to our ResNet backbone; every backbone variable must match."""
  reader = tf.train.load_checkpoint(checkpoint)
  shapes = reader.get_variable_to_shape_map()
  root = find_backbone_root(shapes)
  model_keys = [key for key in shapes if key.startswith(root) and key.endswith(VALUE)]
  counts = _assign(backbone_mapping(backbone, root), reader, model_keys, checkpoint)
  if getattr(backbone, "padding", "same") != "same":
    logger.warning("The Model Garden ResNet %s was trained with TensorFlow SAME padding; this "
                   "backbone pads symmetrically (set model.padding=same to reproduce it exactly)",
                   checkpoint)
  logger.info("Initialized the backbone from the Model Garden checkpoint %s (under %s): %d "
              "variables", checkpoint, root, counts["variables"])
  return counts


# ResNet depth from the number of residual blocks (bottleneck depths only, see above).
_DEPTH_BY_BLOCKS = {16: 50, 33: 101, 50: 152}


def infer_model_config(checkpoint: str, input_size: Tuple[int, int] = (640, 640),
                       base: Optional[config_lib.ModelConfig] = None) -> config_lib.ModelConfig:
  """Our config of the checkpoint's network: depth, widths, head size and class count are
  read from the variable shapes; `input_size` (not stored in weights) is the caller's."""
  shapes = tf.train.load_checkpoint(checkpoint).get_variable_to_shape_map()
  prefix = find_prefix(list(shapes))

  def shape(key: str) -> List[int]:
    full = f"{prefix}{key}/kernel{VALUE}"
    if full not in shapes:
      raise CheckpointMismatchError(f"{checkpoint}: no variable {full}")
    return list(shapes[full])

  blocks = {int(m.group(1)) for key in shapes
            for m in [re.match(re.escape(prefix) + r"_backbone/layer_with_weights-(\d+)/_conv1/",
                               key)] if m}
  depth = _DEPTH_BY_BLOCKS.get(len(blocks))
  if depth is None:
    raise CheckpointMismatchError(
        f"{checkpoint}: {len(blocks)} residual blocks, not a ResNet-50/101/152 "
        f"({sorted(_DEPTH_BY_BLOCKS)} blocks)")
  convs = {int(m.group(1)) for key in shapes
           for m in [re.match(re.escape(prefix) + r"_head/_cls_convs/(\d+)/kernel", key)] if m}
  classifier = shape("_head/_classifier")
  num_anchors = 9
  if classifier[-1] % num_anchors:
    raise CheckpointMismatchError(f"{checkpoint}: classifier has {classifier[-1]} outputs, not "
                                  f"a multiple of {num_anchors} anchors")
  config = modelgarden_model_config(
      base, depth=depth, width_multiplier=shape("_backbone/layer_with_weights-0")[-1] / 64.0,
      fpn_channels=shape("_decoder/layer_with_weights-0")[-1],
      head_channels=shape("_head/_cls_convs/0")[-1], head_convs=len(convs),
      input_size=input_size)
  return dataclasses.replace(config, num_classes=classifier[-1] // num_anchors)


def import_checkpoint(checkpoint: str, output_dir: str,
                      input_size: Tuple[int, int] = (640, 640)) -> Dict[str, object]:
  """Writes a model directory of ours from a Model Garden checkpoint: config.json (the
  inferred architecture), label_map.json (COCO's 91 ids for a 91-class head) and
  checkpoint/ckpt-0. Fine-tuning (`--finetune_from`) and export take it like any model dir."""
  from retinanet import factory  # pylint: disable=g-import-not-at-top
  model_config = infer_model_config(checkpoint, input_size)
  model = factory.build_model(model_config)
  counts = load_into(model, checkpoint)
  if model_config.num_classes == MODELGARDEN_NUM_CLASSES:
    label_map = coco91_label_map()
  else:
    label_map = coco.LabelMap(category_ids=tuple(range(model_config.num_classes)),
                              names=tuple(f"class_{i}" for i in range(model_config.num_classes)))
  config = dataclasses.replace(config_lib.ExperimentConfig(), name="modelgarden-import",
                               model=model_config)
  config_lib.validate(config)
  tf.io.gfile.makedirs(output_dir)
  config_lib.save_config(config, os.path.join(output_dir, layout.CONFIG_FILE))
  coco.save_label_map(label_map, os.path.join(output_dir, layout.LABEL_MAP_FILE))
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model),
                                       os.path.join(output_dir, layout.CHECKPOINT_DIR),
                                       max_to_keep=1)
  prefix = manager.save(checkpoint_number=0)
  logger.info("Imported the Model Garden checkpoint %s: %d variables (%d parameters), "
              "ResNet-%d x%g, FPN %d, heads %d x %d, %d classes -> %s", checkpoint,
              counts["variables"], counts["parameters"], model_config.backbone.depth,
              model_config.backbone.width_multiplier, model_config.fpn.num_channels,
              model_config.head.num_convs, model_config.head.num_channels,
              model_config.num_classes, prefix)
  return {**counts, "checkpoint": prefix, "model_dir": output_dir}
