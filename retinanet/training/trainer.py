"""Training entry point: config -> strategy, model, optimizer, input -> Trainer.

`train(config, train_files=..., model_dir=...)` is what the TFX Trainer
component (and notebooks) call. Resuming is automatic: when `model_dir`
holds a checkpoint, training continues from it at its exact step (model,
optimizer slots and iterations, learning-rate schedule position, EMA, loss
normalizer, and the input iterator where it is checkpointable);
`init_checkpoint` / `finetune_from` only apply to a fresh start.
"""
from __future__ import annotations

import logging
from typing import IO, Optional, Sequence, Tuple, Union

import tensorflow as tf
import tf_keras

from retinanet import config as config_lib
from retinanet import factory
from retinanet.dataloader import input_reader
from retinanet.modeling import resnet
from retinanet.modeling.retinanet_model import RetinaNetModel
from retinanet.training import checkpointing
from retinanet.training import finetune
from retinanet.training.learning_rate import build_learning_rate
from retinanet.training.optimizer import build_optimizer
from retinanet.training.strategy import create_strategy, set_precision_policy
from retinanet.training.train_loop import (DatasetFn, EvalFn, NonFiniteLossError, Trainer,
                                           TrainLoopOptions, TrainResult, retinanet_loss_fn)

logger = logging.getLogger(__name__)

__all__ = ["train", "create_strategy", "build_trainer", "load_trained_model", "TrainResult",
           "NonFiniteLossError"]


def build_trainer(config: config_lib.ExperimentConfig, *, train_files: Union[str, Sequence[str]],
                  model_dir: str, strategy: tf.distribute.Strategy,
                  freeze_patterns: Sequence[str] = (), eval_fn: Optional[EvalFn] = None,
                  summary_dir: Optional[str] = None,
                  progress_stream: Optional[IO[str]] = None,
                  dataset_fn: Optional[DatasetFn] = None) -> Trainer:
  """A Trainer with model, optimizer and input built from `config` under `strategy`.

  The precision policy must already be set (train() does it). `dataset_fn`
  replaces the TFRecord input (fn(input_context) -> dataset of (images, labels)
  batches), e.g. synthetic data for benchmarks.
  """
  with strategy.scope():
    model = factory.build_model(config.model)
    schedule = build_learning_rate(config.optimizer, config.train.total_steps)
    optimizer = build_optimizer(schedule, momentum=config.optimizer.momentum,
                                mixed_precision=config.train.mixed_precision,
                                optimizer_type=config.optimizer.type,
                                weight_decay=config.optimizer.weight_decay)
  loss = config.loss
  anchors = (factory.build_anchors(config.model).boxes() if loss.box_loss == "giou" else None)
  loss_fn, positives_fn = retinanet_loss_fn(alpha=loss.focal_alpha, gamma=loss.focal_gamma,
                                            delta=loss.huber_delta,
                                            box_loss_weight=loss.box_loss_weight,
                                            box_loss=loss.box_loss, anchors=anchors,
                                            variances=config.model.box_variances)
  if dataset_fn is None:
    dataset_fn = input_reader.dataset_fn_from_config(config, train_files, is_training=True)
  return Trainer(strategy=strategy, model=model, optimizer=optimizer, loss_fn=loss_fn,
                 positives_fn=positives_fn, dataset_fn=dataset_fn, model_dir=model_dir,
                 options=TrainLoopOptions.from_config(config), summary_dir=summary_dir,
                 eval_fn=eval_fn, freeze_patterns=freeze_patterns,
                 progress_stream=progress_stream)


def train(config: config_lib.ExperimentConfig, *, train_files: Union[str, Sequence[str]],
          model_dir: str, strategy: Optional[tf.distribute.Strategy] = None,
          init_checkpoint: Optional[str] = None, finetune_from: Optional[str] = None,
          freeze_patterns: Sequence[str] = (), eval_fn: Optional[EvalFn] = None,
          summary_dir: Optional[str] = None,
          progress_stream: Optional[IO[str]] = None) -> TrainResult:
  """Trains RetinaNet to config.train.total_steps; returns a TrainResult.

  Args:
    config: the validated experiment config.
    train_files: TFRecord glob(s) or paths of the training split.
    model_dir: checkpoint directory; resumed from when it holds a checkpoint.
    strategy: a tf.distribute strategy; default create_strategy(config.train.strategy).
    init_checkpoint: backbone checkpoint (save_backbone_checkpoint format);
      overrides model.backbone.init_checkpoint. Fresh starts only.
    finetune_from: a detector checkpoint / model dir / pushed model dir to
      start from (class head re-initialized when the class count differs).
      Fresh starts only; takes precedence over init_checkpoint.
    freeze_patterns: regexes; matching variables (object path or name) are not trained.
    eval_fn: fn(model, step) -> {metric: value}, every train.eval_every steps
      (with EMA weights swapped in when optimizer.ema_decay > 0).
    summary_dir: TensorBoard root (train/ and eval/ below); default <model_dir>/summaries.
    progress_stream: where the TTY progress bar goes (default stderr; only if a TTY).
  Seeds Python, numpy and TF with config.train.seed (model initialization is
  reproducible) and sets the tf_keras precision policy for the duration of the
  call. Raises NonFiniteLossError (naming the step) on a NaN/Inf loss or
  gradient with nan_policy="raise".
  """
  previous_policy = tf_keras.mixed_precision.global_policy()
  set_precision_policy(config.train.mixed_precision)
  try:
    tf_keras.utils.set_random_seed(config.train.seed)
    if strategy is None:
      strategy = create_strategy(config.train.strategy)
    tf.io.gfile.makedirs(model_dir)
    trainer = build_trainer(config, train_files=train_files, model_dir=model_dir,
                            strategy=strategy, freeze_patterns=freeze_patterns, eval_fn=eval_fn,
                            summary_dir=summary_dir, progress_stream=progress_stream)
    report = None
    if trainer.restore_latest() is None:
      report = initialize_model(trainer.model, config.model, init_checkpoint=init_checkpoint,
                                finetune_from=finetune_from)
      if report is not None:
        report.frozen = list(trainer.frozen_paths)
        report.log()
    elif finetune_from or init_checkpoint:
      logger.info("Resuming from %s: ignoring finetune_from / init_checkpoint", model_dir)
    result = trainer.train()
    result.finetune = report
    return result
  finally:
    tf_keras.mixed_precision.set_global_policy(previous_policy)


def initialize_model(model: RetinaNetModel, model_config: config_lib.ModelConfig, *,
                     init_checkpoint: Optional[str] = None,
                     finetune_from: Optional[str] = None) -> Optional[finetune.FinetuneReport]:
  """Initial weights of a fresh run: a fine-tuning source, else the backbone checkpoint."""
  if finetune_from:
    return finetune.init_from_checkpoint(
        model, finetune_from,
        class_prediction_variables=factory.class_prediction_variables(model),
        reinitialize_class_prediction=lambda: factory.reinitialize_class_prediction(model))
  backbone_checkpoint = init_checkpoint or model_config.backbone.init_checkpoint
  if backbone_checkpoint:
    resnet.load_backbone_checkpoint(model.backbone, backbone_checkpoint)
    logger.info("Initialized backbone weights from %s", backbone_checkpoint)
  return None


def load_trained_model(model_config: config_lib.ModelConfig, model_dir: str, *,
                       use_ema: bool = True) -> Tuple[RetinaNetModel, str]:
  """(model, checkpoint prefix): a model built from model_config with the newest
  complete checkpoint of model_dir (or any dir holding one) loaded, EMA weights
  swapped in when the checkpoint has them and use_ema. For evaluation/export."""
  model = factory.build_model(model_config)
  prefix = checkpointing.restore_model(model, model_dir, use_ema=use_ema)
  return model, prefix
