"""The one path from an ExperimentConfig to the objects of a training or an evaluation.

    task = RetinaNetTask(config)
    model = task.build_model()              # factory.build_model
    task.initialize(model, ...)             # backbone checkpoint (any scheme) or fine-tuning
    optimizer = task.build_optimizer()      # schedule + SGD / AdamW (+ loss scaling)
    loss_fn, positives_fn = task.build_losses()
    dataset_fn = task.build_inputs(files, is_training=True)

and `load_model_dir` restores a trained-model directory (the Trainer's Model
artifact, an export, a pushed version) for evaluation, export and fine-tuning.
The training entry point (`retinanet/training/train_lib.py`), evaluation, export, the
benchmarks and the tests all take these objects from here (Model Garden's task
layer in spirit); the library pieces below it take explicit arguments.
"""
from __future__ import annotations

import logging
from typing import NamedTuple, Optional

import tensorflow as tf
import tf_keras

from retinanet import coco
from retinanet import config as config_lib
from retinanet import factory
from retinanet import losses as losses_lib
from retinanet import model_dir as model_dir_lib
from retinanet.dataloader import input_reader
from retinanet.dataloader import parser as parser_lib
from retinanet.modeling import resnet
from retinanet.modeling.retinanet_model import RetinaNetModel
from retinanet.training import checkpointing
from retinanet.training import finetune
from retinanet.training import learning_rate
from retinanet.training import optimizer as optimizer_lib
from retinanet.training.trainer import (RANDOM_WEIGHTS, DatasetFn, LossFn, PositivesFn,
                                        TrainLoopOptions)

logger = logging.getLogger(__name__)

# model.backbone.init_checkpoint="modelgarden:PREFIX" reads a TF Model Garden ResNet (ImageNet
# classifier or RetinaNet) checkpoint; anything else is a checkpoint of ours
# (resnet.save_backbone_checkpoint, python -m retinanet.modeling.imagenet_weights).
MODELGARDEN_SCHEME = config_lib.MODELGARDEN_SCHEME


def initialize_backbone(model: RetinaNetModel, init_checkpoint: str) -> bool:
  """Loads a backbone checkpoint of any scheme into `model.backbone`; False for "".

  Call once when a training starts from scratch (a resumed training's checkpoint
  already holds the backbone).
  """
  if not init_checkpoint:
    return False
  if init_checkpoint.startswith(MODELGARDEN_SCHEME):
    from retinanet.modeling import modelgarden_import  # pylint: disable=g-import-not-at-top
    modelgarden_import.load_backbone_into(model.backbone,
                                          init_checkpoint[len(MODELGARDEN_SCHEME):])
  else:
    resnet.load_backbone_checkpoint(model.backbone, init_checkpoint)
  logger.info("Initialized the backbone from %s", init_checkpoint)
  return True


class Initialization(NamedTuple):
  """Where a fresh training's weights came from: words for the log, and the fine-tuning
  report (restored / re-initialized variables) when it fine-tunes."""
  description: str
  finetune: Optional[finetune.FinetuneReport] = None


class RetinaNetTask:
  """Builds everything a config describes; holds nothing but the config."""

  def __init__(self, config: config_lib.ExperimentConfig):
    config_lib.validate(config)
    self.config = config

  def build_model(self) -> RetinaNetModel:
    """The detector with all variables created (build it under the strategy's scope and the
    precision policy); weights are random until `initialize` or a checkpoint restore."""
    return factory.build_model(self.config.model)

  def build_optimizer(self) -> tf_keras.optimizers.Optimizer:
    """The learning-rate schedule over train.total_steps and the optimizer (with dynamic loss
    scaling under mixed_float16); build it under the strategy's scope."""
    o, t = self.config.optimizer, self.config.train
    schedule = learning_rate.build_learning_rate(o, t.total_steps)
    return optimizer_lib.build_optimizer(schedule, momentum=o.momentum,
                                         mixed_precision=t.mixed_precision,
                                         optimizer_type=o.type, weight_decay=o.weight_decay)

  def build_losses(self) -> tuple[LossFn, PositivesFn]:
    """(loss_fn, positives_fn) of the Trainer: focal + box loss, and the positive anchors
    that normalize them."""
    loss, model = self.config.loss, self.config.model
    anchors = factory.build_anchors(model).boxes() if loss.box_loss == "giou" else None

    def loss_fn(outputs, labels, normalizer):
      return losses_lib.retinanet_loss(
          outputs["class_outputs"], outputs["box_outputs"], labels["class_targets"],
          labels["box_targets"], labels["match_state"], alpha=loss.focal_alpha,
          gamma=loss.focal_gamma, delta=loss.huber_delta, box_loss_weight=loss.box_loss_weight,
          normalizer=normalizer, box_loss=loss.box_loss, anchors=anchors,
          variances=model.box_variances)

    def positives_fn(labels):
      return losses_lib.num_positive_anchors(labels["match_state"])

    return loss_fn, positives_fn

  def build_parser(self, is_training: bool) -> input_reader.ParserFn:
    """The train parser (augmentation + anchor targets) or the eval parser."""
    model, inputs = self.config.model, self.config.input
    if not is_training:
      return parser_lib.EvalParser(output_size=model.input_size,
                                   max_instances=inputs.max_instances, mean_rgb=inputs.mean_rgb,
                                   stddev_rgb=inputs.stddev_rgb)
    return parser_lib.TrainParser(
        output_size=model.input_size, anchors=factory.build_anchors(model).boxes(),
        positive_iou=model.matcher.positive_iou, negative_iou=model.matcher.negative_iou,
        box_variances=model.box_variances,
        allow_low_quality_matches=model.matcher.allow_low_quality_matches,
        crowd_ioa=model.matcher.crowd_ioa, low_quality_rule=model.matcher.low_quality_rule,
        scale_min=inputs.scale_min,
        scale_max=inputs.scale_max, horizontal_flip=inputs.horizontal_flip,
        max_instances=inputs.max_instances, mean_rgb=inputs.mean_rgb,
        stddev_rgb=inputs.stddev_rgb)

  def build_inputs(self, file_pattern: input_reader.FilePatterns, *,
                   is_training: bool) -> DatasetFn:
    """fn(input_context) -> dataset, for strategy.distribute_datasets_from_function.

    Training batches train.global_batch_size, evaluation eval.batch_size (both
    global, split over replicas); evaluation reads at most eval.max_images records
    per pipeline when that is > 0.
    """
    inputs, config = self.config.input, self.config
    batch_size = config.train.global_batch_size if is_training else config.eval.batch_size
    max_records = 0 if is_training else config.eval.max_images

    def dataset_fn(input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
      return input_reader.build_dataset(
          file_pattern, parser=self.build_parser(is_training), is_training=is_training,
          global_batch_size=batch_size, input_context=input_context,
          shuffle_buffer=inputs.shuffle_buffer, cycle_length=inputs.cycle_length,
          deterministic=inputs.deterministic, seed=inputs.seed, max_records=max_records)

    return dataset_fn

  def loop_options(self) -> TrainLoopOptions:
    """The settings the training loop itself needs."""
    t, o, l = self.config.train, self.config.optimizer, self.config.loss
    return TrainLoopOptions(
        global_batch_size=t.global_batch_size, total_steps=t.total_steps,
        steps_per_execution=t.steps_per_execution, log_every=t.log_every,
        checkpoint_every=t.checkpoint_every, keep_checkpoints=t.keep_checkpoints,
        eval_every=t.eval_every, l2_weight_decay=l.l2_weight_decay,
        gradient_clip_norm=o.gradient_clip_norm, ema_decay=o.ema_decay,
        normalizer_momentum=l.normalizer_momentum,
        positives_offset=l.positives_offset, nan_policy=t.nan_policy,
        max_nan_restores=t.max_nan_restores, jit_compile=t.jit_compile)

  def initialize(self, model: RetinaNetModel, *, init_checkpoint: Optional[str] = None,
                 finetune_from: Optional[str] = None) -> Initialization:
    """Initial weights of a fresh training: a model to fine-tune from (class prediction
    re-drawn when its class count differs), else a backbone checkpoint (`init_checkpoint`,
    default model.backbone.init_checkpoint; any scheme), else random."""
    if finetune_from:
      report = finetune.init_from_checkpoint(
          model, finetune_from,
          class_prediction_variables=factory.class_prediction_variables(model),
          reinitialize_class_prediction=lambda: factory.reinitialize_class_prediction(model))
      return Initialization(f"the weights of {finetune_from} (fine-tuning)", report)
    backbone = init_checkpoint or self.config.model.backbone.init_checkpoint
    if initialize_backbone(model, backbone):
      return Initialization(f"the backbone weights of {backbone} and randomly initialized "
                            "FPN and heads")
    return Initialization(RANDOM_WEIGHTS)


class LoadedModel(NamedTuple):
  """A trained-model directory restored: the model with its weights, the config it was
  trained with, its label map (None when the directory has no label_map.json) and the
  checkpoint prefix that was read."""
  model: RetinaNetModel
  config: config_lib.ExperimentConfig
  label_map: Optional[coco.LabelMap]
  checkpoint: str


def load_model_dir(model_dir: str, *, config: Optional[config_lib.ExperimentConfig] = None,
                   postprocess_overrides=None, use_ema: bool = True) -> LoadedModel:
  """Restores the newest complete checkpoint of a trained-model directory.

  `model_dir` is a Model artifact, an export, a pushed version, or any directory
  holding checkpoints (then pass `config`). EMA weights are swapped in when the
  checkpoint has them and `use_ema`; `postprocess_overrides` replace the config's
  NMS settings (model_dir.apply_postprocess_overrides).
  """
  if config is None:
    config = config_lib.load_config(model_dir_lib.config_path(model_dir))
  config = model_dir_lib.apply_postprocess_overrides(config, postprocess_overrides)
  label_map = None
  if tf.io.gfile.exists(model_dir_lib.label_map_path(model_dir)):
    label_map = coco.load_label_map(model_dir_lib.label_map_path(model_dir))
    config_lib.check_num_classes(config, label_map.num_classes)
  model = RetinaNetTask(config).build_model()
  checkpoints = model_dir_lib.checkpoint_dir(model_dir)
  if not tf.io.gfile.isdir(checkpoints):
    checkpoints = model_dir  # a bare checkpoint directory
  prefix = checkpointing.restore_model(model, checkpoints, use_ema=use_ema)
  return LoadedModel(model, config, label_map, prefix)


__all__ = ["MODELGARDEN_SCHEME", "Initialization", "LoadedModel", "RetinaNetTask",
           "initialize_backbone", "load_model_dir"]
