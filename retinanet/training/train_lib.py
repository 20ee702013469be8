"""Training entry point: config -> task -> strategy, model, optimizer, input -> Trainer.

`train(config, train_files=..., model_dir=...)` is what the TFX Trainer
component (and notebooks) call. Resuming is automatic: when `model_dir`
holds a checkpoint, training continues from it at its exact step (model,
optimizer slots and iterations, learning-rate schedule position, EMA, loss
normalizer, and the input iterator where it is checkpointable);
`init_checkpoint` / `finetune_from` only apply to a fresh start.
"""
from __future__ import annotations

import logging
from typing import IO, Optional, Sequence, Union

import tensorflow as tf
import tf_keras

from retinanet import config as config_lib
from retinanet.task import RetinaNetTask
from retinanet.training.strategy import create_strategy, set_precision_policy
from retinanet.training.trainer import (DatasetFn, EvalFn, NonFiniteLossError, Trainer,
                                        TrainResult)

logger = logging.getLogger(__name__)

__all__ = ["train", "create_strategy", "build_trainer", "TrainResult", "NonFiniteLossError"]


def build_trainer(config: config_lib.ExperimentConfig, *, train_files: Union[str, Sequence[str]],
                  model_dir: str, strategy: tf.distribute.Strategy,
                  freeze_patterns: Sequence[str] = (), eval_fn: Optional[EvalFn] = None,
                  summary_dir: Optional[str] = None,
                  progress_stream: Optional[IO[str]] = None,
                  dataset_fn: Optional[DatasetFn] = None) -> Trainer:
  """A Trainer with the task's model, optimizer, losses and input under `strategy`.

  The precision policy must already be set (train() does it). `dataset_fn`
  replaces the TFRecord input (fn(input_context) -> dataset of (images, labels)
  batches), e.g. synthetic data for benchmarks.
  """
  task = RetinaNetTask(config)
  with strategy.scope():
    model = task.build_model()
    optimizer = task.build_optimizer()
  loss_fn, positives_fn = task.build_losses()
  return Trainer(strategy=strategy, model=model, optimizer=optimizer, loss_fn=loss_fn,
                 positives_fn=positives_fn,
                 dataset_fn=dataset_fn or task.build_inputs(train_files, is_training=True),
                 model_dir=model_dir, options=task.loop_options(), summary_dir=summary_dir,
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
    init_checkpoint: backbone checkpoint of any scheme (task.initialize_backbone);
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
  trainer = None
  try:
    tf_keras.utils.set_random_seed(config.train.seed)
    if strategy is None:
      strategy = create_strategy(config.train.strategy)
    tf.io.gfile.makedirs(model_dir)
    trainer = build_trainer(config, train_files=train_files, model_dir=model_dir,
                            strategy=strategy, freeze_patterns=freeze_patterns, eval_fn=eval_fn,
                            summary_dir=summary_dir, progress_stream=progress_stream)
    report, initial_weights = None, None
    if trainer.restore_latest() is None:
      initialization = RetinaNetTask(config).initialize(
          trainer.model, init_checkpoint=init_checkpoint, finetune_from=finetune_from)
      report, initial_weights = initialization.finetune, initialization.description
      if report is not None:
        report.frozen = list(trainer.frozen_paths)
        report.log()
    elif finetune_from or init_checkpoint:
      logger.info("Resuming from %s: ignoring finetune_from / init_checkpoint", model_dir)
    result = trainer.train(initial_weights) if initial_weights else trainer.train()
    result.finetune = report
    return result
  finally:
    tf_keras.mixed_precision.set_global_policy(previous_policy)
    if trainer is not None:
      trainer.close()
