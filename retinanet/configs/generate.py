"""Generates the shipped experiment configs, so they follow one set of rules.

    python -m retinanet.configs.generate          # rewrites retinanet/configs/**/*.json

COCO configs are named coco/retinanet-r{depth}-640-{schedule}-b{global batch}-{hardware}:
  depth     18, 34, 50, 101, 152 (ResNet v1)
  schedule  1x = Detectron's 90k iterations x 16 images = 1.44M images (12.17 epochs of
            the 118,287 train2017 images); 3x and 30x are multiples of it. The learning
            rate drops 10x at 2/3 and again at 8/9 of the schedule (Detectron's 60k/80k of 90k).
  hardware  v3-8 (TPU, 8 cores x 8 images = 64), v3-32 (TPU pod slice, 32 x 8 = 256),
            8gpu (MirroredStrategy, 8 GPUs x 8 images = 64). TPUs train in mixed_bfloat16,
            GPUs in mixed_float16; batch norm is synchronized across replicas.

Two recipes:
  1x, 3x  the paper / Detectron recipe, fine-tuning ImageNet weights: stem and conv2_x
          frozen, P6 from C5, no batch norm in FPN or heads, lr 0.01 per 16 images
          (linear scaling: 0.04 at 64, 0.16 at 256), linear warm-up over 500 steps from
          lr / 3, weight decay 1e-4. Scale jitter 0.8-1.25 (1x) and 0.5-2.0 (3x).
          Depths 50/101/152 expect Keras-applications ImageNet weights (MSRA layout, so
          stride_in_1x1=true) converted with
          python -m retinanet.modeling.imagenet_weights --config=NAME into
          pretrained/resnet{depth}-imagenet/ckpt (override model.backbone.init_checkpoint
          to point elsewhere); 18/34 expect a checkpoint made the same way from torchvision
          weights (see the resnet module docstring).
  30x     the Model Garden from-scratch recipe (long schedule, strong jitter 0.1-2.0):
          random init, nothing frozen, P6 from P5, batch norm in FPN and per level in the
          heads, lr 0.08 per 64 images (0.32 at 256, Model Garden's value), warm-up over
          500 steps from 0.0067 * batch / 256, weight decay 4e-5.

Box coder and loss, every COCO config: unscaled deltas (box_variances 1, 1, 1, 1) with
Huber delta 0.1 and box loss weight 50, Model Garden's retinanet_resnetfpn_coco
convention (detectron2 and torchvision also use unscaled deltas). config.validate
rejects the ancestor project's scaled variances combined with these loss settings.

coco/retinanet-r50-1024-v2recipe-b16-8gpu: torchvision's retinanet_resnet50_fpn_v2
recipe (41.5 AP; pytorch/vision#5756) in our terms: GIoU box loss on decoded boxes
(weight 1), group norm in the heads, P6 from C5, trainable synchronized BN in the
backbone, AdamW lr 1e-4 per 16 images with decoupled weight decay 0.05 on kernels
only, 26 epochs with 10x drops after 16 and 22, scale jitter 0.6-1.0 of a 1024
square (torchvision: shortest side 480-800, at most 1333), torchvision ImageNet V2
weights (v1.5 ResNet: stride in the 3x3). README "COCO recipes" lists each
ingredient, its source and its reported gain. Not trained here (no GPU, no COCO).

coco/retinanet-mobilenetv3large-384-3x-b{64,256}-{8gpu,v3-32}: the mobile detector
(retinanet/modeling/mobilenet_v3.py): MobileNetV3-Large from Keras-applications ImageNet
weights (converted with python -m retinanet.modeling.imagenet_weights into
pretrained/mobilenet_v3_large-imagenet/ckpt; inputs x / 127.5 - 1 like Keras, padding
same), 384x384, a 128-channel FPN and light heads (4 depthwise-separable convs of 128,
as Model Garden's mobile RetinaNet heads), anchor_size 3 (Model Garden's
retinanet_mobile_coco), BN in FPN and heads, nothing frozen, otherwise the 3x recipe.

sample/tiny is a CPU config for the built-in shapes dataset (data/sample_data.py:
256x256 images, 5 classes, objects 16 px to 60% of the image): ResNet-18 at half
width from scratch, 192x192 input (objects from 12 px), levels 3..6 with 64
channels, anchors 16..203 px (anchor_size 2). Sized so the whole local pipeline
finishes in minutes on a 2-core CPU (see BENCHMARKS.md). Its box loss is the ancestor project's
scaled variant with its own consistent loss settings (variances 0.1/0.1/0.2/0.2, Huber
delta 1, weight 1): on this 500-step task it reaches the old mixed convention's AP,
where Model Garden's unscaled settings lose 0.02-0.05 AP, all of it localization
(docs/benchmarks-history.md "Box-loss convention on the main job"). sample/mobile keeps Model
Garden's settings, with which its figures were measured.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List

from retinanet import config as config_lib

CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))
COCO_TRAIN_IMAGES = 118_287
COCO_NUM_CLASSES = 80
COCO_INPUT_SIZE = (640, 640)
IMAGES_PER_1X = 90_000 * 16  # Detectron's 1x schedule
DEPTHS = (18, 34, 50, 101, 152)
SCHEDULES = {"1x": 1, "3x": 3, "30x": 30}
FINE_TUNING_SCHEDULES = ("1x", "3x")
SCALE_JITTER = {"1x": (0.8, 1.25), "3x": (0.5, 2.0), "30x": (0.1, 2.0)}
# Learning rate per image of the global batch (linear scaling rule).
PAPER_LR_PER_IMAGE = 0.01 / 16
SCRATCH_LR_PER_IMAGE = 0.08 / 64
WARMUP_STEPS = 500
STEPS_PER_EXECUTION = 100
# Checkpoint about every 128k images (~1.1 epochs), on a multiple of steps_per_execution.
CHECKPOINT_EVERY_IMAGES = 128_000
EVAL_IMAGES_PER_REPLICA = 2


@dataclasses.dataclass(frozen=True)
class Hardware:
  tag: str
  global_batch_size: int
  replicas: int
  strategy: str
  mixed_precision: str


HARDWARE = (
    Hardware("v3-8", 64, 8, "tpu", "mixed_bfloat16"),
    Hardware("v3-32", 256, 32, "tpu", "mixed_bfloat16"),
    Hardware("8gpu", 64, 8, "mirrored", "mixed_float16"),
)


def coco_config_name(depth: int, schedule: str, hardware: Hardware) -> str:
  return (f"coco/retinanet-r{depth}-{COCO_INPUT_SIZE[0]}-{schedule}-"
          f"b{hardware.global_batch_size}-{hardware.tag}")


def schedule_steps(schedule: str, global_batch_size: int) -> int:
  """Optimizer steps of a schedule: SCHEDULES[schedule] * 1.44M images / batch."""
  return round(SCHEDULES[schedule] * IMAGES_PER_1X / global_batch_size)


def decay_boundaries(total_steps: int) -> tuple:
  """(2/3, 8/9) of the schedule, where the learning rate drops 10x each time."""
  return (round(total_steps * 2 / 3), round(total_steps * 8 / 9))


def set_long_run(t: config_lib.TrainConfig, batch: int, total_steps: int, precision: str,
                 strategy: str) -> None:
  """The train section of a COCO run: executions of STEPS_PER_EXECUTION steps, a
  checkpoint about every CHECKPOINT_EVERY_IMAGES images, NaN-restore."""
  t.global_batch_size = batch
  t.total_steps = total_steps
  t.steps_per_execution = STEPS_PER_EXECUTION
  t.log_every = STEPS_PER_EXECUTION
  t.checkpoint_every = max(1, CHECKPOINT_EVERY_IMAGES // batch // STEPS_PER_EXECUTION) * \
      STEPS_PER_EXECUTION
  t.mixed_precision = precision
  t.strategy = strategy
  t.nan_policy = "restore"  # a long run survives a rare loss spike


def coco_config(depth: int, schedule: str, hardware: Hardware) -> config_lib.ExperimentConfig:
  fine_tuning = schedule in FINE_TUNING_SCHEDULES
  batch = hardware.global_batch_size
  total = schedule_steps(schedule, batch)
  c = config_lib.ExperimentConfig(name=coco_config_name(depth, schedule, hardware))
  m = c.model
  m.num_classes = COCO_NUM_CLASSES
  m.input_size = COCO_INPUT_SIZE
  m.backbone.depth = depth
  m.backbone.freeze_stem_and_first_stage = fine_tuning
  m.backbone.freeze_batch_norm = False  # synchronized BN sees the whole global batch
  m.backbone.stride_in_1x1 = fine_tuning and depth >= 50
  m.backbone.init_checkpoint = f"pretrained/resnet{depth}-imagenet/ckpt" if fine_tuning else ""
  m.fpn.p6_source = "c5" if fine_tuning else "p5"
  m.fpn.use_batch_norm = not fine_tuning
  m.head.use_batch_norm = not fine_tuning
  m.norm.use_sync_bn = hardware.replicas > 1
  c.loss.l2_weight_decay = 1e-4 if fine_tuning else 4e-5
  c.input.scale_min, c.input.scale_max = SCALE_JITTER[schedule]
  c.optimizer.schedule = "piecewise"
  if fine_tuning:
    base_lr = round(PAPER_LR_PER_IMAGE * batch, 6)
    set_coco_schedule(c, hardware, total, base_lr, round(base_lr / 3, 6))
  else:
    set_coco_schedule(c, hardware, total, round(SCRATCH_LR_PER_IMAGE * batch, 6),
                      round(0.0067 * batch / 256, 6))
  config_lib.validate(c)
  return c


def set_coco_schedule(c: config_lib.ExperimentConfig, hardware: Hardware, total_steps: int,
                      base_lr: float, warmup_lr: float) -> None:
  """Learning rates, WARMUP_STEPS warm-up, 10x drops at 2/3 and 8/9, and the long-run
  train/eval sections of a COCO config on `hardware`."""
  o = c.optimizer
  o.base_learning_rate, o.warmup_learning_rate = base_lr, warmup_lr
  o.warmup_steps = WARMUP_STEPS
  o.boundaries = decay_boundaries(total_steps)
  o.decay_rates = (0.1, 0.01)
  set_long_run(c.train, hardware.global_batch_size, total_steps, hardware.mixed_precision,
               hardware.strategy)
  c.eval.batch_size = EVAL_IMAGES_PER_REPLICA * hardware.replicas


V2_RECIPE_BATCH = 16
V2_RECIPE_EPOCHS = (26, 16, 22)  # total, first drop, second drop


def coco_v2_recipe_config() -> config_lib.ExperimentConfig:
  """torchvision's retinanet_resnet50_fpn_v2 recipe (module docstring), 8 GPUs x 2 images."""
  batch = V2_RECIPE_BATCH
  steps_per_epoch = COCO_TRAIN_IMAGES / batch
  total, first, second = (round(e * steps_per_epoch) for e in V2_RECIPE_EPOCHS)
  c = config_lib.ExperimentConfig(name="coco/retinanet-r50-1024-v2recipe-b16-8gpu")
  m = c.model
  m.num_classes = COCO_NUM_CLASSES
  m.input_size = (1024, 1024)
  m.backbone.depth = 50
  m.backbone.freeze_stem_and_first_stage = True  # torchvision trainable_backbone_layers=3
  m.backbone.freeze_batch_norm = False
  m.backbone.stride_in_1x1 = False
  m.backbone.init_checkpoint = "pretrained/resnet50-torchvision-imagenet-v2/ckpt"
  m.fpn.p6_source = "c5"
  m.head.use_group_norm = True
  m.norm.use_sync_bn = True
  m.norm.epsilon = 1e-5
  c.loss.box_loss = "giou"
  c.loss.box_loss_weight = 1.0
  c.loss.l2_weight_decay = 0.0
  c.input.scale_min, c.input.scale_max = 0.6, 1.0
  o = c.optimizer
  o.type = "adamw"
  o.weight_decay = 0.05
  o.base_learning_rate = 1e-4
  o.warmup_steps = 1000
  o.warmup_learning_rate = 1e-7
  o.schedule = "piecewise"
  o.boundaries = (first, second)
  o.decay_rates = (0.1, 0.01)
  set_long_run(c.train, batch, total, "mixed_float16", "mirrored")
  c.eval.batch_size = EVAL_IMAGES_PER_REPLICA * 8
  config_lib.validate(c)
  return c


def set_scaled_box_loss(c: config_lib.ExperimentConfig) -> None:
  """The seed's scaled box targets with the Huber settings of their own scale."""
  c.model.box_variances = config_lib.SCALED_BOX_VARIANCES
  c.loss.huber_delta = config_lib.SCALED_HUBER_DELTA
  c.loss.box_loss_weight = config_lib.SCALED_BOX_LOSS_WEIGHT


def set_modelgarden_box_loss(c: config_lib.ExperimentConfig) -> None:
  """Unscaled deltas with Model Garden's Huber delta and weight."""
  c.model.box_variances = (1.0, 1.0, 1.0, 1.0)
  c.loss.huber_delta = config_lib.REFERENCE_HUBER_DELTA
  c.loss.box_loss_weight = config_lib.REFERENCE_BOX_LOSS_WEIGHT


def tiny_sample_config() -> config_lib.ExperimentConfig:
  """CPU config for the shapes sample data (steps and learning rate tuned on it)."""
  c = config_lib.ExperimentConfig(name="sample/tiny")
  m = c.model
  m.num_classes = 5
  m.input_size = (192, 192)
  m.backbone.depth = 18
  m.backbone.width_multiplier = 0.5
  m.backbone.freeze_stem_and_first_stage = False  # no ImageNet weights: train everything
  m.backbone.init_checkpoint = ""
  m.fpn.min_level, m.fpn.max_level = 3, 6
  m.fpn.num_channels = 64
  m.fpn.p6_source = "p5"
  m.fpn.use_batch_norm = True
  m.head.num_convs = 2
  m.head.num_channels = 64
  m.head.use_batch_norm = True
  m.anchors.anchor_size = 2.0  # P3 anchors 16 px: the smallest shapes are 16 px
  m.matcher.allow_low_quality_matches = True  # small shapes between anchor centres
  set_scaled_box_loss(c)
  c.input.scale_min, c.input.scale_max = 0.75, 1.25
  c.input.shuffle_buffer = 256
  o = c.optimizer
  o.base_learning_rate = 0.04
  o.warmup_steps = 50
  o.warmup_learning_rate = 0.002
  t = c.train
  t.global_batch_size = 16
  t.total_steps = 500
  o.boundaries = decay_boundaries(t.total_steps)
  o.decay_rates = (0.1, 0.01)
  t.steps_per_execution = 10
  t.log_every = 10
  t.checkpoint_every = 100
  t.keep_checkpoints = 2
  t.mixed_precision = "float32"
  t.strategy = "default"
  c.eval.batch_size = 8
  config_lib.validate(c)
  return c


MODELGARDEN_FINETUNE_BATCH = 16
MODELGARDEN_FINETUNE_STEPS = 6000


def modelgarden_finetune_config() -> config_lib.ExperimentConfig:
  """Fine-tuning a user's COCO-format data from Model Garden's COCO RetinaNet checkpoint
  (`--finetune_from=modelgarden:CKPT`): exactly Model Garden's architecture (padding same,
  P6 from P5, BN in FPN and heads, 9 anchors; retinanet/modeling/modelgarden_import.py),
  the class count from the data, the paper's fine-tuning learning rate for batch 16."""
  from retinanet.modeling import modelgarden_import  # pylint: disable=g-import-not-at-top
  c = config_lib.ExperimentConfig(name="finetune/retinanet-r50-640-modelgarden-b16")
  c.model = modelgarden_import.modelgarden_model_config(c.model, input_size=COCO_INPUT_SIZE)
  c.model.num_classes = COCO_NUM_CLASSES  # replaced by the data's class count at run time
  c.input.scale_min, c.input.scale_max = SCALE_JITTER["1x"]
  c.loss.l2_weight_decay = 1e-4
  o = c.optimizer
  o.base_learning_rate = round(PAPER_LR_PER_IMAGE * MODELGARDEN_FINETUNE_BATCH, 6)
  o.warmup_learning_rate = round(o.base_learning_rate / 3, 6)
  o.warmup_steps = 200
  o.boundaries = decay_boundaries(MODELGARDEN_FINETUNE_STEPS)
  o.decay_rates = (0.1, 0.01)
  c.train.global_batch_size = MODELGARDEN_FINETUNE_BATCH
  c.train.total_steps = MODELGARDEN_FINETUNE_STEPS
  c.train.steps_per_execution = STEPS_PER_EXECUTION
  c.train.checkpoint_every = 1000
  c.train.log_every = STEPS_PER_EXECUTION
  config_lib.validate(c)
  return c


MOBILE_INPUT_SIZE = (384, 384)
MOBILE_HARDWARE = (HARDWARE[1], HARDWARE[2])  # v3-32, 8gpu
KERAS_MOBILENET_NORMALIZATION = (127.5, 127.5, 127.5)  # x / 127.5 - 1


def set_mobile_model(m: config_lib.ModelConfig, backbone_type: str) -> None:
  """A MobileNetV3 backbone with Keras' input convention and the light heads."""
  m.backbone.type = backbone_type
  m.backbone.width_multiplier = 1.0
  m.backbone.freeze_stem_and_first_stage = False
  m.padding = "same"  # Keras applications' padding: ImageNet weights map exactly
  m.head.separable = True
  m.fpn.use_batch_norm = True
  m.head.use_batch_norm = True
  m.fpn.p6_source = "p5"


def set_keras_input_normalization(c: config_lib.ExperimentConfig) -> None:
  c.input.mean_rgb = KERAS_MOBILENET_NORMALIZATION
  c.input.stddev_rgb = KERAS_MOBILENET_NORMALIZATION


def coco_mobile_config(hardware: Hardware) -> config_lib.ExperimentConfig:
  """MobileNetV3-Large RetinaNet at 384 (module docstring), the 3x ImageNet recipe."""
  schedule, batch = "3x", hardware.global_batch_size
  total = schedule_steps(schedule, batch)
  c = config_lib.ExperimentConfig(
      name=f"coco/retinanet-mobilenetv3large-{MOBILE_INPUT_SIZE[0]}-{schedule}-b{batch}-"
           f"{hardware.tag}")
  m = c.model
  m.num_classes = COCO_NUM_CLASSES
  m.input_size = MOBILE_INPUT_SIZE
  set_mobile_model(m, "mobilenet_v3_large")
  m.backbone.init_checkpoint = "pretrained/mobilenet_v3_large-imagenet/ckpt"
  m.fpn.num_channels = 128
  m.head.num_convs, m.head.num_channels = 4, 128
  m.anchors.anchor_size = 3.0
  m.norm.use_sync_bn = hardware.replicas > 1
  set_keras_input_normalization(c)
  c.loss.l2_weight_decay = 4e-5
  c.input.scale_min, c.input.scale_max = SCALE_JITTER[schedule]
  base_lr = round(PAPER_LR_PER_IMAGE * batch, 6)
  set_coco_schedule(c, hardware, total, base_lr, round(base_lr / 3, 6))
  config_lib.validate(c)
  return c


def mobile_sample_config() -> config_lib.ExperimentConfig:
  """sample/tiny with a MobileNetV3-Large backbone and separable heads (from scratch)."""
  c = tiny_sample_config()
  c.name = "sample/mobile"
  set_mobile_model(c.model, "mobilenet_v3_large")
  set_keras_input_normalization(c)
  set_modelgarden_box_loss(c)  # the settings its BENCHMARKS figures were measured with
  config_lib.validate(c)
  return c


PARITY_STEPS = 300
PARITY_BATCH = 8


def modelgarden_parity_config() -> config_lib.ExperimentConfig:
  """The training-parity run against Model Garden (benchmarks/bench_training_parity.py and
  tests/test_training_parity.py): Model Garden's `retinanet_resnetfpn_coco` architecture
  and loss at a size 2 CPU cores train in minutes (ResNet-50 at width 0.125, 64-channel
  FPN and heads of 2 convs, 256x256 sample images), every setting matched to what the
  benchmark gives Model Garden: focal gamma 1.5, matching 0.5 / 0.5 with low-quality
  matches of one anchor per box, loss divided by positives + 1, L2 1e-4 on kernels, SGD
  momentum 0.9 with a linear warm-up and one 10x drop, no augmentation, the records'
  order, fp32."""
  from retinanet.modeling import modelgarden_import  # pylint: disable=g-import-not-at-top
  c = config_lib.ExperimentConfig(name="parity/retinanet-r50w0125-256-modelgarden")
  c.model = modelgarden_import.modelgarden_model_config(
      c.model, width_multiplier=0.125, fpn_channels=64, head_channels=64, head_convs=2,
      input_size=(256, 256))
  m = c.model
  m.num_classes = 5
  m.backbone.freeze_stem_and_first_stage = False  # Model Garden trains every layer
  m.backbone.init_checkpoint = ""
  m.matcher.positive_iou, m.matcher.negative_iou = 0.5, 0.5
  m.matcher.allow_low_quality_matches = True  # BoxMatcher(force_match_for_each_col=True):
  m.matcher.low_quality_rule = "first_argmax"  # one anchor per box
  set_modelgarden_box_loss(c)
  c.loss.focal_gamma = 1.5
  c.loss.positives_offset = 1.0
  c.loss.l2_weight_decay = 1e-4
  c.input.horizontal_flip = False
  c.input.scale_min = c.input.scale_max = 1.0
  c.input.shuffle_buffer = 1
  c.input.cycle_length = 1
  c.input.deterministic = True
  o = c.optimizer
  o.base_learning_rate = 0.04
  o.warmup_steps = 50
  o.warmup_learning_rate = 0.004
  # Ours drops at step >= boundary, tf's PiecewiseConstantDecay (Model Garden's
  # stepwise) at step > boundary: 241 here is Model Garden's boundary 240.
  o.boundaries = (241,)
  o.decay_rates = (0.1,)
  t = c.train
  t.global_batch_size = PARITY_BATCH
  t.total_steps = PARITY_STEPS
  t.steps_per_execution = 1
  t.log_every = 1  # every step's losses, to compare step by step
  t.checkpoint_every = PARITY_STEPS
  t.keep_checkpoints = 1
  config_lib.validate(c)
  return c


def all_configs() -> Dict[str, config_lib.ExperimentConfig]:
  """{name: config} of every shipped config; the file is CONFIG_DIR/{name}.json."""
  configs = {}
  for depth in DEPTHS:
    for schedule in SCHEDULES:
      for hardware in HARDWARE:
        config = coco_config(depth, schedule, hardware)
        configs[config.name] = config
  for hardware in MOBILE_HARDWARE:
    config = coco_mobile_config(hardware)
    configs[config.name] = config
  for config in (coco_v2_recipe_config(), modelgarden_finetune_config(), tiny_sample_config(),
                 mobile_sample_config(), modelgarden_parity_config()):
    configs[config.name] = config
  return configs


def write_all(directory: str = CONFIG_DIR) -> List[str]:
  """Writes every config as sorted, indented JSON of what it changes against the config
  tree's defaults (retinanet/config.py), so a file shows its choices and two files diff
  to their differences; returns the paths."""
  paths = []
  for name, config in all_configs().items():
    path = os.path.join(directory, name + ".json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    config_lib.save_config(config, path, overrides_only=True)
    paths.append(path)
  return paths


def main() -> None:
  paths = write_all()
  print(f"wrote {len(paths)} configs under {CONFIG_DIR}")


if __name__ == "__main__":
  main()
