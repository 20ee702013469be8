"""Trainer executor: resolves artifact paths and calls `retinanet.training.train`."""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List

import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from components import artifacts as artifact_layout
from retinanet import config as config_lib
from retinanet import model_dir as model_dir_lib

logger = logging.getLogger(__name__)


def load_label_map(label_map_uri: str):
  from data import coco  # pylint: disable=g-import-not-at-top
  return coco.load_label_map(os.path.join(label_map_uri, artifact_layout.LABEL_MAP_FILE))


class Executor(base_executor.BaseExecutor):
  """Trains the model; writes checkpoint/config/label map into the Model artifact."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    from retinanet.training import trainer  # pylint: disable=g-import-not-at-top

    examples = artifact_utils.get_single_instance(input_dict["examples"])
    label_map_uri = artifact_utils.get_single_uri(input_dict["label_map"])
    base_models = input_dict.get("base_model") or []
    model = artifact_utils.get_single_instance(output_dict["model"])
    model_run = artifact_utils.get_single_instance(output_dict["model_run"])

    config = config_lib.config_from_dict(json.loads(exec_properties["config_json"]))
    label_map = load_label_map(label_map_uri)
    config_lib.check_num_classes(config, label_map.num_classes)
    strategy_name = exec_properties.get("strategy") or config.train.strategy
    freeze_patterns = json.loads(exec_properties.get("freeze_patterns") or "[]")

    checkpoint_dir = model_dir_lib.checkpoint_dir(model.uri)
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
          ground_truth_path=artifact_layout.examples_ground_truth_path(examples, "val"))
    result = trainer.train(
        config,
        train_files=artifact_layout.examples_file_pattern(examples, "train"),
        model_dir=checkpoint_dir,
        strategy=strategy,
        finetune_from=finetune_from,
        freeze_patterns=freeze_patterns,
        eval_fn=eval_fn,
        summary_dir=summary_dir)

    config_lib.save_config(config, model_dir_lib.config_path(model.uri))
    tf.io.gfile.copy(os.path.join(label_map_uri, artifact_layout.LABEL_MAP_FILE),
                     model_dir_lib.label_map_path(model.uri), overwrite=True)
    model.set_int_custom_property("final_step", int(result.final_step))
    model.set_float_custom_property("final_total_loss", float(result.final_losses["total_loss"]))
    model.set_float_custom_property("train_images_per_second", float(result.images_per_second))
    model.set_int_custom_property("num_classes", int(config.model.num_classes))
    model.set_string_custom_property("strategy", strategy_name)
    model_run.set_float_custom_property("wall_time_seconds", float(result.wall_time_seconds))
    if result.finetune is not None:
      model.set_string_custom_property("finetune_source", result.finetune.source)
      model.set_int_custom_property("finetune_restored", len(result.finetune.restored))
      model.set_int_custom_property("finetune_reinitialized", len(result.finetune.reinitialized))
      model.set_int_custom_property("finetune_frozen", len(result.finetune.frozen))
