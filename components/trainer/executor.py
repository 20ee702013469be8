"""Trainer executor: resolves artifact paths, calls `retinanet.training.train`, exports.

Resume after preemption: training runs in a workspace keyed by a fingerprint
of everything that defines the training (config, strategy, freeze patterns,
the trainer's code version, the examples, label map and base model
artifacts), `<resume_dir>/<fingerprint>/`, not in the execution's output URI
(which is new on every run). A rerun of the same pipeline after a Trainer
that did not finish (killed, preempted, out of memory) finds that workspace
and continues from its last checkpoint; a changed config or data has another
fingerprint and starts fresh. When training finishes, the model is exported
into the Model artifact (TFX's serving layout, `<uri>/Format-Serving/`: the
SavedModel, its config and label map, and the final checkpoint for
fine-tuning), and the workspace is deleted. Workspaces of unfinished
trainings beyond the newest `keep_unfinished_trainings` are pruned. What to do
comes as a `TrainerRequest` (request.py), read once from the exec properties.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from components import artifacts as artifact_layout
from components.trainer.request import TrainerRequest
from retinanet import coco
from retinanet import config as config_lib
from retinanet import layout
from retinanet import model_dir as model_dir_lib

logger = logging.getLogger(__name__)


def training_fingerprint(*, config_json: str, strategy: str, freeze_patterns: Sequence[str],
                         code_version: str, examples_uri: str, label_map_uri: str,
                         base_model_uri: Optional[str]) -> str:
  """16 hex chars identifying a training: equal exactly when a rerun may resume it."""
  key = {"config": json.loads(config_json), "strategy": strategy,
         "freeze_patterns": list(freeze_patterns), "code_version": code_version,
         "examples": examples_uri, "label_map": label_map_uri, "base_model": base_model_uri or ""}
  return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def prune_unfinished_trainings(resume_dir: str, keep: int, current: str) -> List[str]:
  """Deletes workspaces other than `current` beyond the `keep` most recently written; returns them."""
  if not tf.io.gfile.isdir(resume_dir):
    return []
  others = []
  for name in tf.io.gfile.listdir(resume_dir):
    name = name.rstrip("/")
    if name == current:
      continue
    path = os.path.join(resume_dir, name)
    stamps = [tf.io.gfile.stat(os.path.join(root, f)).mtime_nsec
              for root, _, files in tf.io.gfile.walk(path) for f in files]
    others.append((max(stamps, default=0), path))
  removed = [path for _, path in sorted(others, reverse=True)[keep:]]
  for path in removed:
    tf.io.gfile.rmtree(path)
    logger.info("Removed the workspace of an unfinished training: %s", path)
  return removed


def load_box_statistics(uri: str) -> Dict[str, Any]:
  with tf.io.gfile.GFile(os.path.join(uri, layout.BOX_STATISTICS_REPORT_FILE)) as f:
    return json.load(f)


def load_label_map(label_map_uri: str):
  return coco.load_label_map(os.path.join(label_map_uri, layout.LABEL_MAP_FILE))


def refuse_blocking_anomalies(anomalies: List[types.Artifact]) -> None:
  """The data-validation gate: raises, before any training, when DataValidator found
  anomalies that were not accepted (its message names the span, the kinds, the numbers)."""
  for artifact in anomalies:
    if artifact.get_int_custom_property(layout.ValidationKeys.BLOCKING):
      raise RuntimeError(artifact.get_string_custom_property(layout.ValidationKeys.MESSAGE))


def examples_with_label_map(examples: List[types.Artifact], label_map) -> List[types.Artifact]:
  """The Examples whose classes are `label_map`'s, oldest span first. A span converted with
  other categories (a class added, knowingly accepted) starts a new window: older spans
  are left out, with a warning, rather than trained with shifted class indices."""
  span = artifact_layout.examples_span
  kept, left_out = [], []
  for artifact in sorted(examples, key=span):
    path = os.path.join(artifact.uri, layout.LABEL_MAP_FILE)
    own = coco.load_label_map(path) if tf.io.gfile.exists(path) else label_map
    (kept if own == label_map else left_out).append(artifact)
  if left_out:
    logger.warning("Training window: span(s) %s left out, their categories differ from the "
                   "newest span's", ", ".join(str(span(a)) for a in left_out))
  if not kept:
    raise ValueError("no Examples with the label map's categories to train on")
  if len(kept) > 1:
    logger.info("Training window: spans %s", ", ".join(str(span(a)) for a in kept))
  return kept


@dataclasses.dataclass
class TrainingPlan:
  """Everything a training needs, resolved from the executor's inputs and request."""
  request: TrainerRequest
  config: config_lib.ExperimentConfig
  strategy_name: str
  fingerprint: str
  workspace: str
  checkpoint_dir: str
  resumed_from: Optional[str]
  summary_dir: str
  finetune_from: Optional[str]
  label_map: Any
  label_map_uri: str
  # The Examples trained on (the spans of a window, oldest first); the last one's val
  # split is the in-training evaluation's.
  examples: List[types.Artifact]


def _config_to_train(request: TrainerRequest, label_map,
                     statistics: List[types.Artifact]) -> config_lib.ExperimentConfig:
  """The request's config, checked against the label map, with the anchor-fit decision."""
  from retinanet.training import anchor_policy  # pylint: disable=g-import-not-at-top
  config = config_lib.config_from_dict(json.loads(request.config_json))
  config_lib.check_num_classes(config, label_map.num_classes)
  report = load_box_statistics(statistics[0].uri) if statistics else None
  config = anchor_policy.apply_anchor_fit(config, report, statistics[0].uri if statistics else "")
  if report is not None:
    logger.info("Dataset statistics: %s", anchor_policy.coverage_line(report))
  logger.info("Anchors: %s", config.anchor_fit.decision)
  return config


def plan_training(input_dict: Dict[str, List[types.Artifact]],
                  output_dict: Dict[str, List[types.Artifact]],
                  request: TrainerRequest) -> TrainingPlan:
  """Config (with the anchor-fit decision), strategy, resume workspace and sources."""
  from retinanet.training import checkpointing  # pylint: disable=g-import-not-at-top
  refuse_blocking_anomalies(input_dict.get("anomalies") or [])
  label_map_uri = artifact_utils.get_single_uri(input_dict["label_map"])
  label_map = load_label_map(label_map_uri)
  examples = examples_with_label_map(input_dict["examples"], label_map)
  base_models = input_dict.get("base_model") or []
  model = artifact_utils.get_single_instance(output_dict["model"])
  model_run = artifact_utils.get_single_instance(output_dict["model_run"])
  config = _config_to_train(request, label_map, input_dict.get("box_statistics") or [])
  if base_models and request.continue_steps > 0:
    config = config_lib.with_total_steps(config, request.continue_steps)
    logger.info("Warm start from the model %s for %d steps", base_models[0].uri,
                request.continue_steps)
  strategy_name = request.strategy or config.train.strategy
  fingerprint = training_fingerprint(
      config_json=config_lib.config_to_json(config), strategy=strategy_name,
      freeze_patterns=request.freeze_patterns, code_version=request.code_version,
      examples_uri=",".join(e.uri for e in examples), label_map_uri=label_map_uri,
      base_model_uri=base_models[0].uri if base_models else None)
  workspace = (os.path.join(request.resume_dir, fingerprint) if request.resume_dir
               else os.path.join(model.uri, "training"))
  checkpoint_dir = model_dir_lib.checkpoint_dir(workspace)
  return TrainingPlan(
      request=request, config=config, strategy_name=strategy_name, fingerprint=fingerprint,
      workspace=workspace, checkpoint_dir=checkpoint_dir,
      resumed_from=checkpointing.latest_complete_checkpoint(checkpoint_dir),
      summary_dir=os.path.join(model_run.uri, layout.TENSORBOARD_DIR),
      finetune_from=(model_dir_lib.checkpoint_dir(base_models[0].uri) if base_models else None),
      label_map=label_map, label_map_uri=label_map_uri, examples=examples)


def run_training(plan: TrainingPlan) -> Tuple[Any, bool]:
  """(TrainResult, is_chief): trains (or resumes) in plan.workspace under its strategy."""
  from retinanet.training import train_lib  # pylint: disable=g-import-not-at-top
  request = plan.request
  strategy = train_lib.create_strategy(plan.strategy_name, tpu=request.tpu or None,
                                     tpu_zone=request.tpu_zone or None,
                                     gcp_project=request.gcp_project or None)
  eval_fn = None
  if plan.config.train.eval_every > 0:
    from retinanet.evaluation import evaluate_model  # pylint: disable=g-import-not-at-top
    eval_fn = evaluate_model.make_eval_callback(
        plan.config,
        file_pattern=artifact_layout.examples_file_pattern(plan.examples[-1], "val"),
        label_map=plan.label_map,
        ground_truth_path=artifact_layout.examples_ground_truth_path(plan.examples[-1], "val"),
        summary_dir=os.path.join(plan.summary_dir, "eval"))
  result = train_lib.train(
      plan.config,
      train_files=[artifact_layout.examples_file_pattern(e, "train") for e in plan.examples],
      model_dir=plan.checkpoint_dir,
      strategy=strategy,
      finetune_from=plan.finetune_from,
      freeze_patterns=request.freeze_patterns,
      eval_fn=eval_fn,
      summary_dir=plan.summary_dir)
  return result, bool(strategy.extended.should_checkpoint)


def result_summary(result) -> Dict[str, Any]:
  """The JSON-able part of a TrainResult that the Model artifact records (its keys are the
  Model's MLMD keys where they are the same numbers)."""
  keys = layout.ModelKeys
  summary = {
      keys.FINAL_STEP: int(result.final_step),
      "final_losses": {k: float(v) for k, v in result.final_losses.items()},
      "history": [[int(step), {k: float(v) for k, v in values.items()}]
                  for step, values in result.history],
      "images_per_second": float(result.images_per_second),
      keys.WALL_TIME_SECONDS: float(result.wall_time_seconds),
      keys.TRUNCATED_OBJECTS: int(result.truncated_objects),
      keys.SKIPPED_RECORDS: int(result.skipped_records),
      "finetune": None,
  }
  if result.finetune is not None:
    summary["finetune"] = {"source": result.finetune.source,
                           "restored": len(result.finetune.restored),
                           "reinitialized": len(result.finetune.reinitialized),
                           "frozen": len(result.finetune.frozen)}
  return summary


def finish_training(plan: TrainingPlan, summary: Dict[str, Any], model: types.Artifact,
                    model_run: types.Artifact) -> None:
  """Exports the trained workspace into the Model artifact and records the run in MLMD."""
  keys = layout.ModelKeys
  from retinanet.serving import export  # pylint: disable=g-import-not-at-top
  config_lib.save_config(plan.config, model_dir_lib.config_path(plan.workspace))
  tf.io.gfile.copy(os.path.join(plan.label_map_uri, layout.LABEL_MAP_FILE),
                   model_dir_lib.label_map_path(plan.workspace), overwrite=True)
  export.export_model_dir(plan.workspace, model_dir_lib.serving_model_dir(model.uri))
  tf.io.gfile.rmtree(plan.workspace)
  model.set_string_custom_property(layout.ModelKeys.TRAINING_FINGERPRINT, plan.fingerprint)
  model.set_string_custom_property(layout.ModelKeys.RESUMED_FROM, plan.resumed_from or "")
  model.set_int_custom_property(layout.ModelKeys.TRUNCATED_OBJECTS, summary[keys.TRUNCATED_OBJECTS])
  model.set_int_custom_property(layout.ModelKeys.SKIPPED_RECORDS, summary[keys.SKIPPED_RECORDS])
  model.set_int_custom_property(layout.ModelKeys.FINAL_STEP, summary[keys.FINAL_STEP])
  # A training killed after its last step resumes with no step left to run (no losses).
  model.set_float_custom_property(layout.ModelKeys.FINAL_TOTAL_LOSS,
                                  summary["final_losses"].get("total_loss", float("nan")))
  model.set_float_custom_property(layout.ModelKeys.TRAIN_IMAGES_PER_SECOND,
                                  summary["images_per_second"])
  model.set_int_custom_property(layout.ModelKeys.NUM_CLASSES, int(plan.config.model.num_classes))
  model.set_string_custom_property(layout.ModelKeys.STRATEGY, plan.strategy_name)
  model.set_string_custom_property(layout.ModelKeys.ANCHOR_FIT_DECISION,
                                   plan.config.anchor_fit.decision)
  spans = [artifact_layout.examples_span(e) for e in plan.examples]
  model.set_int_custom_property(layout.ModelKeys.NEWEST_SPAN, max(spans))
  model.set_string_custom_property(layout.ModelKeys.TRAINED_SPANS,
                                   ",".join(str(s) for s in spans))
  model_run.set_float_custom_property(layout.ModelKeys.WALL_TIME_SECONDS,
                                      summary[keys.WALL_TIME_SECONDS])
  finetune = summary.get("finetune")
  if finetune:
    model.set_string_custom_property(layout.ModelKeys.FINETUNE_SOURCE, finetune["source"])
    model.set_int_custom_property(layout.ModelKeys.FINETUNE_RESTORED, finetune["restored"])
    model.set_int_custom_property(layout.ModelKeys.FINETUNE_REINITIALIZED,
                                  finetune["reinitialized"])
    model.set_int_custom_property(layout.ModelKeys.FINETUNE_FROZEN, finetune["frozen"])


def _log_plan(plan: TrainingPlan) -> None:
  if plan.resumed_from:
    logger.info("Resuming the unfinished training %s of this config and data from %s",
                plan.fingerprint, plan.resumed_from)
  elif plan.finetune_from:
    logger.info("Fine-tuning %s from %s in %s", plan.fingerprint, plan.finetune_from,
                plan.workspace)
  else:
    logger.info("Training %s from scratch in %s", plan.fingerprint, plan.workspace)


class Executor(base_executor.BaseExecutor):
  """Trains (or resumes) the model; exports it into the Model artifact (module docstring).

  With the `vertex_job` parameter (components/trainer/vertex_job.py) the
  training itself runs as a Vertex AI CustomJob whose workers run
  `WorkerExecutor`; this executor waits for it and then exports.
  """

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    request = TrainerRequest.from_exec_properties(exec_properties)
    plan = plan_training(input_dict, output_dict, request)
    _log_plan(plan)
    if request.resume_dir:
      prune_unfinished_trainings(request.resume_dir, request.keep_unfinished_trainings,
                                 plan.fingerprint)
    model = artifact_utils.get_single_instance(output_dict["model"])
    model_run = artifact_utils.get_single_instance(output_dict["model_run"])
    if request.vertex_job:
      from components.trainer import vertex_job  # pylint: disable=g-import-not-at-top
      job_name = vertex_job.run(vertex_job.VertexJobSpec.from_json(request.vertex_job),
                                input_dict, output_dict, exec_properties)
      model.set_string_custom_property(layout.ModelKeys.VERTEX_JOB_NAME, job_name)
      model.set_string_custom_property(layout.ModelKeys.VERTEX_JOB_CONSOLE,
                                       vertex_job.console_link(job_name))
      summary = read_result(plan.workspace)
    else:
      result, _ = run_training(plan)
      summary = result_summary(result)
    finish_training(plan, summary, model, model_run)


def read_result(workspace: str) -> Dict[str, Any]:
  path = os.path.join(workspace, layout.TRAINING_RESULT_FILE)
  if not tf.io.gfile.exists(path):
    raise RuntimeError(f"the training job finished but its chief wrote no {path}")
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


class WorkerExecutor(base_executor.BaseExecutor):
  """The training entry point of every worker of a (multi-worker or TPU) training job.

  Run by `python -m tfx.scripts.run_executor --executor_class_path
  components.trainer.executor.WorkerExecutor --inputs ... --outputs ...
  --exec-properties ...` (what TFX's Vertex training client puts in each
  worker pool). The cluster comes from TF_CONFIG (Vertex sets it); every
  worker trains in the shared workspace, only the chief writes checkpoints
  there, and the chief writes `training_result.json` for the launching
  Executor, which exports the model.
  """

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    plan = plan_training(input_dict, output_dict,
                         TrainerRequest.from_exec_properties(exec_properties))
    _log_plan(plan)
    result, is_chief = run_training(plan)
    if is_chief:
      tf.io.gfile.makedirs(plan.workspace)
      with tf.io.gfile.GFile(os.path.join(plan.workspace, layout.TRAINING_RESULT_FILE), "w") as f:
        json.dump(result_summary(result), f)
