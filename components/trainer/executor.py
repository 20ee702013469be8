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
trainings beyond the newest `keep_unfinished_trainings` are pruned.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any, Dict, List, Optional

import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from components import artifacts as artifact_layout
from retinanet import config as config_lib
from retinanet import model_dir as model_dir_lib

logger = logging.getLogger(__name__)


def training_fingerprint(*, config_json: str, strategy: str, freeze_patterns: str,
                         code_version: str, examples_uri: str, label_map_uri: str,
                         base_model_uri: Optional[str]) -> str:
  """16 hex chars identifying a training: equal exactly when a rerun may resume it."""
  key = {"config": json.loads(config_json), "strategy": strategy,
         "freeze_patterns": json.loads(freeze_patterns or "[]"), "code_version": code_version,
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
  from data import box_statistics  # pylint: disable=g-import-not-at-top
  with tf.io.gfile.GFile(os.path.join(uri, box_statistics.REPORT_FILE)) as f:
    return json.load(f)


def load_label_map(label_map_uri: str):
  from data import coco  # pylint: disable=g-import-not-at-top
  return coco.load_label_map(os.path.join(label_map_uri, artifact_layout.LABEL_MAP_FILE))


class Executor(base_executor.BaseExecutor):
  """Trains (or resumes) the model; exports it into the Model artifact (module docstring)."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    from retinanet.serving import export  # pylint: disable=g-import-not-at-top
    from retinanet.training import checkpointing, trainer  # pylint: disable=g-import-not-at-top

    examples = artifact_utils.get_single_instance(input_dict["examples"])
    label_map_uri = artifact_utils.get_single_uri(input_dict["label_map"])
    base_models = input_dict.get("base_model") or []
    model = artifact_utils.get_single_instance(output_dict["model"])
    model_run = artifact_utils.get_single_instance(output_dict["model_run"])

    config = config_lib.config_from_dict(json.loads(exec_properties["config_json"]))
    label_map = load_label_map(label_map_uri)
    config_lib.check_num_classes(config, label_map.num_classes)
    statistics = input_dict.get("box_statistics") or []
    report = load_box_statistics(statistics[0].uri) if statistics else None
    from data import box_statistics  # pylint: disable=g-import-not-at-top
    config = box_statistics.apply_anchor_fit(config, report,
                                             statistics[0].uri if statistics else "")
    if report is not None:
      logger.info("Dataset statistics: %s", box_statistics.coverage_line(report))
    logger.info("Anchors: %s", config.anchor_fit.decision)
    config_json = config_lib.config_to_json(config)
    strategy_name = exec_properties.get("strategy") or config.train.strategy
    freeze_patterns = json.loads(exec_properties.get("freeze_patterns") or "[]")

    fingerprint = training_fingerprint(
        config_json=config_json, strategy=strategy_name,
        freeze_patterns=exec_properties.get("freeze_patterns") or "[]",
        code_version=exec_properties.get("code_version") or "", examples_uri=examples.uri,
        label_map_uri=label_map_uri, base_model_uri=base_models[0].uri if base_models else None)
    resume_dir = exec_properties.get("resume_dir") or ""
    workspace = (os.path.join(resume_dir, fingerprint) if resume_dir
                 else os.path.join(model.uri, "training"))
    checkpoint_dir = model_dir_lib.checkpoint_dir(workspace)
    resumed_from = checkpointing.latest_complete_checkpoint(checkpoint_dir)
    if resumed_from:
      logger.info("Resuming the unfinished training %s of this config and data from %s",
                  fingerprint, resumed_from)
    else:
      logger.info("Training %s from scratch in %s", fingerprint, workspace)
    if resume_dir:
      prune_unfinished_trainings(resume_dir, int(exec_properties.get("keep_unfinished_trainings")
                                                 or 0), fingerprint)
    summary_dir = os.path.join(model_run.uri, artifact_layout.MODEL_RUN_TENSORBOARD_DIR)
    finetune_from = None
    if base_models:
      finetune_from = model_dir_lib.checkpoint_dir(base_models[0].uri)
      logger.info("Fine-tuning from %s", finetune_from)

    strategy = trainer.create_strategy(
        strategy_name,
        tpu=exec_properties.get("tpu") or None,
        tpu_zone=exec_properties.get("tpu_zone") or None,
        gcp_project=exec_properties.get("gcp_project") or None)
    eval_fn = None
    if config.train.eval_every > 0:
      from retinanet.evaluation import evaluate_model  # pylint: disable=g-import-not-at-top
      eval_fn = evaluate_model.make_eval_callback(
          config, file_pattern=artifact_layout.examples_file_pattern(examples, "val"),
          label_map=label_map,
          ground_truth_path=artifact_layout.examples_ground_truth_path(examples, "val"),
          summary_dir=os.path.join(summary_dir, "eval"))
    result = trainer.train(
        config,
        train_files=artifact_layout.examples_file_pattern(examples, "train"),
        model_dir=checkpoint_dir,
        strategy=strategy,
        finetune_from=finetune_from,
        freeze_patterns=freeze_patterns,
        eval_fn=eval_fn,
        summary_dir=summary_dir)

    config_lib.save_config(config, model_dir_lib.config_path(workspace))
    tf.io.gfile.copy(os.path.join(label_map_uri, artifact_layout.LABEL_MAP_FILE),
                     model_dir_lib.label_map_path(workspace), overwrite=True)
    export.export_model_dir(workspace, model_dir_lib.serving_model_dir(model.uri))
    tf.io.gfile.rmtree(workspace)
    model.set_string_custom_property("training_fingerprint", fingerprint)
    model.set_string_custom_property("resumed_from", resumed_from or "")
    model.set_int_custom_property("truncated_objects", int(result.truncated_objects))
    model.set_int_custom_property("skipped_records", int(result.skipped_records))
    model.set_int_custom_property("final_step", int(result.final_step))
    # A training killed after its last step resumes with no step left to run (no losses).
    model.set_float_custom_property("final_total_loss",
                                    float(result.final_losses.get("total_loss", float("nan"))))
    model.set_float_custom_property("train_images_per_second", float(result.images_per_second))
    model.set_int_custom_property("num_classes", int(config.model.num_classes))
    model.set_string_custom_property("strategy", strategy_name)
    model.set_string_custom_property("anchor_fit_decision", config.anchor_fit.decision)
    model_run.set_float_custom_property("wall_time_seconds", float(result.wall_time_seconds))
    if result.finetune is not None:
      model.set_string_custom_property("finetune_source", result.finetune.source)
      model.set_int_custom_property("finetune_restored", len(result.finetune.restored))
      model.set_int_custom_property("finetune_reinitialized", len(result.finetune.reinitialized))
      model.set_int_custom_property("finetune_frozen", len(result.finetune.frozen))
