"""The Trainer: the distributed custom training loop (step, loop, checkpoints, logs, NaN policy).

`Trainer` receives every part (strategy, model, optimizer, loss, input) and
owns only the loop; `retinanet.training.train_lib.train` takes the parts from
the task (`retinanet.task.RetinaNetTask`), which builds them from
the config.

Loss scaling across replicas: each replica's class and box losses are
divided by the positive-anchor count of the GLOBAL batch (an all-reduce sum
of the replicas' counts plus `positives_offset`, optionally smoothed by a
`LossNormalizer`), and the L2 term by the number of replicas. Gradients are
then all-reduced with SUM, so any replica count gives the gradient of
  sum_over_global_batch(losses) / global_positives + L2,
the same as one replica on the same global batch (Detectron2 / Model Garden).
Clipping is applied to the all-reduced gradient, and the reported gradient
norm is that global norm (before clipping).
"""
from __future__ import annotations

import dataclasses
import gc
import logging
import os
import tempfile
import threading
import time
from typing import IO, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras

from retinanet import config as config_lib
from retinanet import losses as losses_lib
from retinanet.training import checkpointing
from retinanet.training import ema as ema_lib
from retinanet.training import finetune
from retinanet.training import optimizer as optimizer_lib
from retinanet.training import progress

logger = logging.getLogger(__name__)

# (outputs, labels, normalizer) -> {"class_loss", "box_loss", "total_loss"} (float32 scalars;
# total_loss = class_loss + box_loss_weight * box_loss, each divided by `normalizer`).
LossFn = Callable[[Mapping[str, tf.Tensor], Mapping[str, tf.Tensor], tf.Tensor],
                  Mapping[str, tf.Tensor]]
# labels -> float32 scalar: positive anchors in this replica's batch.
PositivesFn = Callable[[Mapping[str, tf.Tensor]], tf.Tensor]
# (model, global step) -> {metric name: value}; called every eval_every steps.
EvalFn = Callable[[tf_keras.Model, int], Mapping[str, float]]
DatasetFn = Callable[[tf.distribute.InputContext], tf.data.Dataset]

# What a fresh start without a backbone checkpoint or fine-tuning source trains from.
RANDOM_WEIGHTS = "random weights initialization"

_SUMMED = ("class_loss", "box_loss", "weighted_loss", "num_positives", "truncated_objects",
           "skipped_records")
_MEANED = ("l2_regularization", "gradient_norm", "normalizer")


class NonFiniteLossError(FloatingPointError):
  """The total loss (or, without loss scaling, the gradient norm) became NaN or Inf.

  `step` is the global step (1-based) that produced it.
  """

  def __init__(self, step: int, metrics: Mapping[str, float], detail: str = ""):
    self.step = step
    self.metrics = dict(metrics)
    shown = ", ".join(f"{k}={v:.4g}" for k, v in self.metrics.items())
    super().__init__(
        f"Non-finite loss or gradient at global step {step} ({shown}){detail}. Lower "
        "optimizer.base_learning_rate, set optimizer.gradient_clip_norm, check the input "
        "data, or set train.nan_policy='restore' to reload the last checkpoint and continue.")


@dataclasses.dataclass(frozen=True)
class TrainLoopOptions:
  """Loop settings (the train/optimizer/loss config values the loop itself needs).

  jit_compile compiles each replica's forward + backward with XLA (the
  all-reduces and the optimizer update stay outside); with synchronized batch
  norm under a multi-device strategy that needs XLA collectives (TPU).
  Measured on this CPU, XLA is slower than the default oneDNN kernels
  (BENCHMARKS.md "Training").
  """
  global_batch_size: int
  total_steps: int
  steps_per_execution: int = 1
  log_every: int = 100
  checkpoint_every: int = 1000
  keep_checkpoints: int = 5
  eval_every: int = 0
  l2_weight_decay: float = 0.0
  gradient_clip_norm: float = 0.0
  ema_decay: float = 0.0
  normalizer_momentum: float = 0.0
  positives_offset: float = 0.0
  nan_policy: str = "raise"
  max_nan_restores: int = 3
  jit_compile: bool = False

  def __post_init__(self):
    if self.nan_policy not in config_lib.NAN_POLICIES:
      raise ValueError(f"nan_policy={self.nan_policy!r} is not one of {config_lib.NAN_POLICIES}")
    for name in ("global_batch_size", "total_steps", "steps_per_execution", "log_every",
                 "checkpoint_every", "keep_checkpoints"):
      if getattr(self, name) < 1:
        raise ValueError(f"TrainLoopOptions.{name}={getattr(self, name)} must be >= 1")


@dataclasses.dataclass
class TrainResult:
  final_step: int
  # Mean over the last log window: class_loss, box_loss, weighted_loss,
  # l2_regularization, total_loss, gradient_norm, learning_rate, num_positives.
  final_losses: Dict[str, float]
  checkpoint_path: Optional[str]
  wall_time_seconds: float
  # Images/s of the steps after the first execution (tracing/compilation excluded
  # when more than one execution ran).
  images_per_second: float
  nan_restores: int = 0
  # (step, metrics) of every log line, and {step: eval results}.
  history: List[Tuple[int, Dict[str, float]]] = dataclasses.field(default_factory=list)
  eval_results: Dict[int, Dict[str, float]] = dataclasses.field(default_factory=dict)
  # Set by Trainer.train on a fresh fine-tuning start.
  finetune: Optional["finetune.FinetuneReport"] = None
  # Objects beyond input.max_instances in the training batches (cut from the
  # carried labels["gt_*"] only: the anchor targets encode every object).
  truncated_objects: int = 0
  # Training records that failed to decode and were skipped (placeholders).
  skipped_records: int = 0


class _Window:
  """Sums of the reduced metrics of the executions since the last log line."""

  def __init__(self):
    self.sums: Optional[Dict[str, float]] = None
    self.steps = 0
    self.seconds = 0.0

  def add(self, sums: Mapping[str, float], steps: int, seconds: float) -> None:
    self.sums = dict(sums) if self.sums is None else {k: self.sums[k] + sums[k] for k in sums}
    self.steps += steps
    self.seconds += seconds

  def means(self) -> Dict[str, float]:
    return {k: v / self.steps for k, v in self.sums.items()}


class _Throughput:
  """Steps and seconds of every execution but the first (tracing), for images/s."""

  def __init__(self):
    self.first: Optional[Tuple[int, float]] = None
    self.steps = 0
    self.seconds = 0.0

  def add(self, steps: int, seconds: float) -> None:
    if self.first is None:
      self.first = (steps, seconds)
    else:
      self.steps += steps
      self.seconds += seconds

  def images_per_second(self, batch_size: int) -> float:
    steps, seconds = self.steps, self.seconds
    if steps == 0 and self.first is not None:  # one execution only: it is all there is
      steps, seconds = self.first
    return batch_size * steps / seconds if seconds > 0 else 0.0


class _Writers:
  """The chief's TensorBoard writers: train/, and eval/ when there is an eval callback."""

  def __init__(self, summary_dir: str, is_chief: bool, with_eval: bool):
    self.train_dir = os.path.join(summary_dir, "train")
    self.train = tf.summary.create_file_writer(self.train_dir) if is_chief else None
    self.eval = (tf.summary.create_file_writer(os.path.join(summary_dir, "eval"))
                 if is_chief and with_eval else None)

  def close(self) -> None:
    for writer in (self.train, self.eval):
      if writer is not None:
        writer.close()


def _collect_in_background() -> None:
  """gc.collect() for Trainer.close, logging a long wait (on tf.data's threads)."""
  start = time.perf_counter()
  gc.collect()
  seconds = time.perf_counter() - start
  if seconds > 5:
    logger.info("Freed the training input pipeline in %.1f s (waiting on tf.data's threads)",
                seconds)


class Trainer:
  """Runs the training loop; build model and optimizer under `strategy.scope()` first."""

  def __init__(self, *, strategy: tf.distribute.Strategy, model: tf_keras.Model,
               optimizer: tf_keras.optimizers.Optimizer, loss_fn: LossFn,
               positives_fn: PositivesFn, dataset_fn: DatasetFn, model_dir: str,
               options: TrainLoopOptions, summary_dir: Optional[str] = None,
               eval_fn: Optional[EvalFn] = None, freeze_patterns: Sequence[str] = (),
               progress_stream: Optional[IO[str]] = None):
    self.strategy = strategy
    self.model = model
    self.optimizer = optimizer
    self.options = options
    self.model_dir = model_dir
    self.summary_dir = summary_dir or os.path.join(model_dir, "summaries")
    self.eval_fn = eval_fn
    self._loss_fn = loss_fn
    self._positives_fn = positives_fn
    self._progress_stream = progress_stream
    if not model.built or not model.variables:
      raise ValueError("Trainer: build the model (factory.build_model builds it) before training")
    for var in model.variables[:1]:
      if not strategy.extended.variable_created_in_scope(var):
        raise ValueError("Trainer: the model was not built under strategy.scope(); build it "
                         "inside `with strategy.scope():`")

    self.named_variables = checkpointing.variable_paths(model)
    path_of = {id(v): p for p, v in self.named_variables.items()}
    trainable = {path_of[id(v)]: v for v in model.trainable_variables}
    self.num_trainable_before_freeze = len(trainable)
    self.frozen_paths = finetune.freeze_mask(trainable, freeze_patterns)
    frozen = set(self.frozen_paths)
    self.train_paths = [p for p in trainable if p not in frozen]
    self.train_variables = [trainable[p] for p in self.train_paths]
    self.l2_variables = optimizer_lib.kernel_variables(self.train_variables)
    if not self.train_variables:
      raise ValueError("Trainer: no trainable variables left after freezing "
                       f"{list(freeze_patterns)}")

    with strategy.scope():
      optimizer_lib.exclude_non_kernels_from_decay(optimizer, self.train_variables)
      optimizer.build(self.train_variables)
      self.ema = (ema_lib.WeightAverage({p: trainable[p] for p in self.train_paths},
                                        options.ema_decay) if options.ema_decay > 0 else None)
      self.loss_normalizer = (losses_lib.LossNormalizer(options.normalizer_momentum)
                              if options.normalizer_momentum > 0 else None)
      self.dataset = strategy.distribute_datasets_from_function(dataset_fn)
      self.iterator = iter(self.dataset)

    self.is_chief = strategy.extended.should_checkpoint
    # Multi-worker: every worker takes part in a save, but only the chief's copy is kept.
    # The others write to a local temporary directory (deleted after each save), never
    # into model_dir; every worker restores from model_dir (restore_latest).
    checkpoint_dir = model_dir if self.is_chief else tempfile.mkdtemp(
        prefix=f"retinanet-worker{strategy.cluster_resolver.task_id}-checkpoint-")
    parts = dict(model=model, optimizer=optimizer, ema=self.ema,
                 loss_normalizer=self.loss_normalizer)
    self.checkpoint = checkpointing.make_checkpoint(iterator=self.iterator, **parts)
    self.iterator_checkpointed = checkpointing.is_trackable(self.iterator)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, checkpoint_dir, max_to_keep=options.keep_checkpoints,
        checkpoint_name=checkpointing.CHECKPOINT_NAME)
    self._step_fn = (tf.function(self._forward_backward, jit_compile=True)
                     if options.jit_compile else self._forward_backward)
    self._loop = tf.function(self._loop_impl)
    self._log_model()
    self._restored: Optional[bool] = None

  # ---- the step -----------------------------------------------------------

  def _forward_backward(self, images, labels, normalizer):
    num_replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    with tf.GradientTape() as tape:
      outputs = self.model(images, training=True)
      losses = self._loss_fn(outputs, labels, normalizer)
      l2 = optimizer_lib.l2_regularization(self.l2_variables, self.options.l2_weight_decay)
      loss = tf.cast(losses["total_loss"], tf.float32) + l2 / float(num_replicas)
      if optimizer_lib.is_loss_scaled(self.optimizer):
        loss = self.optimizer.get_scaled_loss(loss)
    grads = tape.gradient(loss, self.train_variables)
    missing = [p for p, g in zip(self.train_paths, grads) if g is None]
    if missing:
      raise ValueError(f"no gradient for {len(missing)} trainable variables, e.g. {missing[:5]}: "
                       "freeze them (freeze_patterns) or remove them from the model")
    return losses, l2, grads

  def _replica_step(self, images, labels):
    ctx = tf.distribute.get_replica_context()
    local_positives = tf.cast(self._positives_fn(labels), tf.float32)
    global_positives = ctx.all_reduce(tf.distribute.ReduceOp.SUM, local_positives)
    count = global_positives + self.options.positives_offset
    if self.loss_normalizer is not None:
      normalizer = self.loss_normalizer(count)
    else:
      normalizer = tf.maximum(count, 1.0)
    losses, l2, grads = self._step_fn(images, labels, normalizer)
    grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    if optimizer_lib.is_loss_scaled(self.optimizer):
      grads = self.optimizer.get_unscaled_gradients(grads)
    grads, grad_norm = optimizer_lib.clip_by_global_norm(grads, self.options.gradient_clip_norm)
    self.optimizer.apply_gradients(zip(grads, self.train_variables),
                                   skip_gradients_aggregation=True)
    if self.ema is not None:
      self.ema.update()
    return {
        "class_loss": tf.cast(losses["class_loss"], tf.float32),
        "box_loss": tf.cast(losses["box_loss"], tf.float32),
        "weighted_loss": tf.cast(losses["total_loss"], tf.float32),
        "num_positives": local_positives,
        "truncated_objects": (tf.cast(tf.reduce_sum(labels["num_truncated"]), tf.float32)
                              if "num_truncated" in labels else tf.constant(0.0)),
        "skipped_records": (tf.cast(tf.reduce_sum(labels["skipped"]), tf.float32)
                            if "skipped" in labels else tf.constant(0.0)),
        "l2_regularization": l2,
        "gradient_norm": grad_norm,
        "normalizer": tf.cast(normalizer, tf.float32),
    }

  def _reduce(self, per_replica: Mapping[str, object]) -> Dict[str, tf.Tensor]:
    out = {}
    for key in _SUMMED:
      out[key] = self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica[key], axis=None)
    for key in _MEANED:
      out[key] = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica[key], axis=None)
    out["total_loss"] = out["weighted_loss"] + out["l2_regularization"]
    return out

  def _loop_impl(self, iterator, num_steps):
    """Runs up to num_steps steps; stops early on a non-finite loss or at the end of the input.

    Returns (sums of the reduced metrics, metrics of the last step, steps run).
    """
    keys = _SUMMED + _MEANED + ("total_loss",)
    sums = {k: tf.constant(0.0) for k in keys}
    last = {k: tf.constant(0.0) for k in keys}
    steps_run = tf.constant(0, tf.int32)
    for _ in tf.range(num_steps):
      element = iterator.get_next_as_optional()
      if not element.has_value():
        break
      images, labels = element.get_value()
      # The step has no data-dependent Python control flow: converting it (and
      # through it every Keras layer) with autograph only costs tracing time.
      step_fn = tf.autograph.experimental.do_not_convert(self._replica_step)
      last = self._reduce(self.strategy.run(step_fn, args=(images, labels)))
      sums = {k: sums[k] + last[k] for k in keys}
      steps_run += 1
      if not self._finite(last):
        break
    return sums, last, steps_run

  def _finite(self, metrics: Mapping[str, object]):
    """Loss finite and, unless dynamic loss scaling skips such steps, gradients too.

    The gradient check matters: ReLU / max-pool can turn NaN activations into
    finite outputs, so a NaN input may give a finite loss but NaN gradients
    (and NaN weights from then on).
    """
    finite = tf.math.is_finite(metrics["total_loss"])
    if not optimizer_lib.is_loss_scaled(self.optimizer):
      finite = tf.logical_and(finite, tf.math.is_finite(metrics["gradient_norm"]))
    return finite

  # ---- public helpers -----------------------------------------------------

  def run_steps(self, num_steps: int) -> Tuple[int, Dict[str, float]]:
    """Runs up to num_steps steps in one execution, without logs or checkpoints.

    Returns (steps run, mean metrics over them); fewer steps than asked means
    the input ended. Raises NonFiniteLossError naming the step on NaN/Inf.
    For benchmarks and notebooks; `train` is the full loop.
    """
    step = self.global_step
    sums, last, steps_run = self._loop(self.iterator, tf.constant(num_steps, tf.int32))
    steps_run = int(steps_run)
    if steps_run and not bool(self._finite(last)):
      raise NonFiniteLossError(step + steps_run, self._to_python(last))
    return steps_run, {k: float(v) / max(steps_run, 1) for k, v in sums.items()}

  @property
  def global_step(self) -> int:
    return int(self.optimizer.iterations.numpy())

  def l2_regularization(self) -> float:
    return float(optimizer_lib.l2_regularization(self.l2_variables, self.options.l2_weight_decay))

  def restore_latest(self) -> Optional[str]:
    """Restores the newest complete checkpoint of model_dir (all state); None when there is none."""
    logger.info("Looking for existing checkpoints in %s", self.model_dir)
    prefix = checkpointing.latest_complete_checkpoint(self.model_dir)
    self._restored = prefix is not None
    if prefix is None:
      return None
    self._restore(prefix, with_input=True)
    logger.info("Restored checkpoint %s at step %d%s", prefix, self.global_step,
                "" if self.iterator_checkpointed else
                " (input pipeline restarts: the distributed iterator is not checkpointable)")
    return prefix

  def _restore(self, prefix: str, with_input: bool) -> None:
    """Reads model + optimizer (required) and the optional state the checkpoint has.

    A checkpoint written without EMA, normalizer or input state (another
    strategy or config) still resumes: the missing part restarts, with a warning.
    """
    saved = {key.split("/", 1)[0] for key, _ in tf.train.list_variables(prefix)}
    parts = {"model": self.model, "optimizer": self.optimizer}
    optional = {"ema": (self.ema, "the EMA restarts from the restored weights"),
                "loss_normalizer": (self.loss_normalizer, "the normalizer restarts"),
                "iterator": (self.iterator if with_input and self.iterator_checkpointed
                             else None, "the input pipeline restarts")}
    for name, (obj, consequence) in optional.items():
      if obj is None:
        continue
      if name in saved:
        parts[name] = obj
      else:
        logger.warning("Checkpoint %s has no %s state: %s", prefix, name, consequence)
    tf.train.Checkpoint(**parts).read(prefix).assert_existing_objects_matched().expect_partial()
    if self.ema is not None and "ema" not in parts:
      self.ema.reset()

  def save_checkpoint(self) -> str:
    path = self.manager.save(checkpoint_number=self.global_step)
    if not self.is_chief:
      tf.io.gfile.rmtree(self.manager.directory)
      return path
    logger.info("Saved checkpoint %s", path)
    return path

  # ---- the loop -----------------------------------------------------------

  def _next_stop(self, step: int) -> int:
    o = self.options
    stops = [o.total_steps, step + o.steps_per_execution]
    for every in (o.log_every, o.checkpoint_every, o.eval_every):
      if every > 0:
        stops.append((step // every + 1) * every)
    return min(stops)

  def _log_model(self) -> None:
    logger.info("Running on %d replicas", self.strategy.num_replicas_in_sync)
    logger.info("Trainable weights: %d", self.num_trainable_before_freeze)
    if self.frozen_paths:
      logger.info("Freezing %d weights matching the freeze patterns", len(self.frozen_paths))
      logger.info("Trainable weights after freezing: %d", len(self.train_variables))
    params = sum(int(np.prod(v.shape)) for v in self.train_variables)
    logger.info("Total trainable parameters: {:,}".format(params))

  def _log_startup(self, writer_dir: str) -> None:
    o = self.options
    logger.info("Initial l2_regularization loss %s", self.l2_regularization())
    if self.ema is not None:
      logger.info("Keeping an exponential moving average of the weights (decay %s)", o.ema_decay)
    logger.info("Starting training from step %d for %d steps with %d steps per execution",
                self.global_step, o.total_steps, o.steps_per_execution)
    logger.info("Saving checkpoints every %d steps in %s", o.checkpoint_every, self.model_dir)
    logger.info("Writing summaries to %s", writer_dir)

  def _to_python(self, metrics: Mapping[str, tf.Tensor]) -> Dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}

  def _learning_rate_of_last_step(self) -> float:
    inner = (self.optimizer.inner_optimizer if optimizer_lib.is_loss_scaled(self.optimizer)
             else self.optimizer)
    schedule = getattr(inner, "_learning_rate", None)
    step = max(self.global_step - 1, 0)
    if isinstance(schedule, tf_keras.optimizers.schedules.LearningRateSchedule):
      return float(schedule(step))
    return float(inner.learning_rate)

  def _handle_non_finite(self, bad_step: int, metrics: Dict[str, float], restores: int) -> int:
    if self.options.nan_policy == "raise":
      raise NonFiniteLossError(bad_step, metrics)
    if restores >= self.options.max_nan_restores:
      raise NonFiniteLossError(bad_step, metrics,
                               f" after {restores} checkpoint restores (train.max_nan_restores)")
    prefix = checkpointing.latest_complete_checkpoint(self.model_dir)
    if prefix is None:
      raise NonFiniteLossError(bad_step, metrics, "; no checkpoint to restore")
    self._restore(prefix, with_input=False)
    logger.warning("Non-finite loss or gradient at global step %d; restored %s (step %d), "
                   "restore %d of %d; the input continues after the offending batch",
                   bad_step, prefix,
                   self.global_step, restores + 1, self.options.max_nan_restores)
    return restores + 1

  def close(self) -> None:
    """Frees the input pipeline now, not whenever Python's garbage collector finds it.

    The distributed dataset's iterator sits in reference cycles, so only a collection
    frees it, and freeing it can wait on tf.data's threads with the CPU idle. Measured
    here: a collection 25 s after a 2-step two-replica run took 15 s, one right after it
    0.4 s; in `make test`, right after the 150-step trainings of the end-to-end tests,
    20-30 s (not reproduced outside the pipeline runs; cause not isolated). The collection
    runs in a thread of its own (`_collect_in_background`) so that the caller's export or
    evaluation need not wait for it. The trainer cannot train after this.
    """
    self.iterator = self.dataset = self.checkpoint = self.manager = None
    threading.Thread(target=_collect_in_background, name="free-training-input",
                     daemon=True).start()

  def train(self, initial_weights: str = RANDOM_WEIGHTS) -> TrainResult:
    """Trains from the current (restored or initial) state to options.total_steps.

    `initial_weights` says where the weights of a fresh start came from (the task's
    `initialize`), for the log.
    """
    o = self.options
    wall_start = time.time()
    self._start(initial_weights)
    writers = _Writers(self.summary_dir, self.is_chief, self.eval_fn is not None)
    self._log_startup(writers.train_dir)
    bar = progress.ProgressBar(o.total_steps, self._progress_stream)
    if o.nan_policy == "restore" and self.manager.latest_checkpoint is None:
      self.save_checkpoint()  # something to restore on the first non-finite loss
    result = TrainResult(final_step=self.global_step, final_losses={}, checkpoint_path=None,
                         wall_time_seconds=0.0, images_per_second=0.0)
    window, throughput = _Window(), _Throughput()
    saved = (self.manager.latest_checkpoint, self.global_step) if self._restored else (None, -1)
    try:
      step = self.global_step
      while step < o.total_steps:
        num_steps = self._next_stop(step) - step
        start = time.time()
        sums, last, steps_run = self._loop(self.iterator, tf.constant(num_steps, tf.int32))
        steps_run, seconds, last = int(steps_run), time.time() - start, self._to_python(last)
        if steps_run and not bool(self._finite(last)):
          result.nan_restores = self._handle_non_finite(step + steps_run, last,
                                                        result.nan_restores)
          step, window = self.global_step, _Window()
          continue
        step = self.global_step
        throughput.add(steps_run, seconds)
        sums = self._to_python(sums)
        self._count_truncated(result, int(round(sums.get("truncated_objects", 0.0))), step)
        self._count_skipped(result, int(round(sums.get("skipped_records", 0.0))), step)
        window.add(sums, steps_run, seconds)
        exhausted = steps_run < num_steps
        if exhausted:
          logger.warning("The training input ended at step %d (training datasets must repeat); "
                         "stopping", step)
        if window.steps and (step % o.log_every == 0 or step >= o.total_steps or exhausted):
          self._log_window(step, window, writers.train, bar, result)
          window = _Window()
        if step % o.checkpoint_every == 0 or step >= o.total_steps or exhausted:
          saved = (self.save_checkpoint(), step)
        if self.eval_fn is not None and o.eval_every > 0 and step % o.eval_every == 0:
          result.eval_results[step] = self._evaluate(step, writers.eval)
        if exhausted:
          break
    finally:
      bar.close()
      writers.close()
    if self.global_step != saved[1]:
      saved = (self.save_checkpoint(), self.global_step)
    return self._finish(result, saved[0], wall_start, throughput)

  def _start(self, initial_weights: str) -> None:
    """Restores the latest checkpoint if not done yet; says what a fresh start trains from."""
    if self._restored is None:
      self.restore_latest()
    if self._restored:
      return
    log = logger.warning if initial_weights == RANDOM_WEIGHTS else logger.info
    log("No existing checkpoints found in %s, running model in train mode with %s!",
        self.model_dir, initial_weights)
    if self.ema is not None:
      self.ema.reset()  # start from the initial (e.g. fine-tuning) weights

  def _log_window(self, step: int, window: "_Window", writer, bar, result: TrainResult) -> None:
    """The log line, TensorBoard scalars and progress bar of one log window."""
    o = self.options
    metrics = window.means()
    metrics["learning_rate"] = self._learning_rate_of_last_step()
    metrics["execution_time"] = window.seconds
    ips = o.global_batch_size * window.steps / max(window.seconds, 1e-9)
    eta = (o.total_steps - step) * window.seconds / window.steps
    logger.info(progress.format_log_line(step, o.total_steps, eta, ips, metrics))
    progress.write_scalars(writer, step, progress.rounded_metrics(metrics, digits=9))
    progress.write_scalars(writer, step, {"images-per-second": ips})
    result.history.append((step, metrics))
    result.final_losses = metrics
    bar.update(step, ips, metrics["total_loss"])

  def _finish(self, result: TrainResult, last_saved: Optional[str], wall_start: float,
              throughput: "_Throughput") -> TrainResult:
    result.final_step = self.global_step
    result.checkpoint_path = last_saved
    result.wall_time_seconds = time.time() - wall_start
    result.images_per_second = throughput.images_per_second(self.options.global_batch_size)
    logger.info("Training finished at step %d in %.1f s (%.2f imgs/s after the first execution)",
                result.final_step, result.wall_time_seconds, result.images_per_second)
    if result.skipped_records:
      logger.warning("%d training records failed to decode and were skipped",
                     result.skipped_records)
    if result.truncated_objects:
      logger.warning("%d objects in the training batches were beyond input.max_instances: the "
                     "anchor targets include them, labels['gt_*'] do not",
                     result.truncated_objects)
    return result

  @staticmethod
  def _count_skipped(result: TrainResult, count: int, step: int) -> None:
    """Adds an execution's undecodable records to the result, one warning per execution."""
    if count:
      logger.warning("Step %d: skipped %d training record(s) that failed to decode (%d so far); "
                     "check the data stage's undecodable_image statistics", step, count,
                     result.skipped_records + count)
    result.skipped_records += count

  @staticmethod
  def _count_truncated(result: TrainResult, count: int, step: int) -> None:
    """Adds an execution's truncated objects to the result; warns on the first ones."""
    if count and not result.truncated_objects:
      logger.warning("Step %d: images with more objects than input.max_instances; their anchor "
                     "targets still use every object (counted in TrainResult.truncated_objects)",
                     step)
    result.truncated_objects += count

  def _evaluate(self, step: int, writer: Optional[tf.summary.SummaryWriter]) -> Dict[str, float]:
    start = time.time()
    if self.ema is not None:
      with self.ema.averaged_weights():
        results = dict(self.eval_fn(self.model, step))
    else:
      results = dict(self.eval_fn(self.model, step))
    numeric = {k: float(v) for k, v in results.items()
               if isinstance(v, (int, float, np.floating, np.integer))}
    logger.info("Evaluation at step %d (%.1f s%s): %s", step, time.time() - start,
                ", EMA weights" if self.ema is not None else "",
                {k: round(v, 4) for k, v in numeric.items()})
    progress.write_scalars(writer, step, numeric)
    return numeric
