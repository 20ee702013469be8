"""A trained-model directory: the Trainer's Model artifact, an export, a pushed version.

Layout (one definition for the trainer, evaluator, exporter and fine-tuning):
    <dir>/checkpoint/      tf.train checkpoints (model, optimizer, EMA, ...)
    <dir>/config.json      the ExperimentConfig it was trained with
    <dir>/label_map.json   contiguous class index <-> original category id and name
    <dir>/saved_model.pb, variables/   the served SavedModel (exports, pushed versions)

The Trainer's Model artifact follows TFX's serving-model layout: all of the
above lives in `<artifact uri>/Format-Serving/` (what TFX's Pusher, TFMA and
InfraValidator read), so the artifact is what is served and can be fine-tuned
from. `resolve` maps either form to the directory holding the files.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional, Tuple

import tensorflow as tf

from data import coco
from retinanet import config as config_lib

CHECKPOINT_DIR = "checkpoint"
CONFIG_FILE = "config.json"
LABEL_MAP_FILE = "label_map.json"
SAVED_MODEL_FILE = "saved_model.pb"
# tfx.types.standard_artifacts.Model's serving sub-directory (tfx.utils.path_utils).
SERVING_MODEL_DIR = "Format-Serving"


def serving_model_dir(artifact_uri: str) -> str:
  """`<Model artifact uri>/Format-Serving`: where the Trainer writes the model."""
  return os.path.join(artifact_uri, SERVING_MODEL_DIR)


def resolve(model_dir: str) -> str:
  """The directory holding config.json: `model_dir/Format-Serving` when that exists
  (a Model artifact), else `model_dir` itself (an export or pushed version)."""
  serving = serving_model_dir(model_dir)
  return serving if tf.io.gfile.exists(os.path.join(serving, CONFIG_FILE)) else model_dir


def checkpoint_dir(model_dir: str) -> str:
  return os.path.join(resolve(model_dir), CHECKPOINT_DIR)


def config_path(model_dir: str) -> str:
  return os.path.join(resolve(model_dir), CONFIG_FILE)


def label_map_path(model_dir: str) -> str:
  return os.path.join(resolve(model_dir), LABEL_MAP_FILE)


def has_saved_model(model_dir: str) -> bool:
  return tf.io.gfile.exists(os.path.join(resolve(model_dir), SAVED_MODEL_FILE))


def apply_postprocess_overrides(config: config_lib.ExperimentConfig,
                                overrides: Optional[Mapping[str, Any]]
                                ) -> config_lib.ExperimentConfig:
  """A new validated config with `postprocess.<key>` set for each {key: value}.

  String values are parsed like command-line overrides, so "0.6" and 0.6 both
  give a number; an unknown key raises ConfigError naming it.
  """
  items = [f"postprocess.{key}={value if isinstance(value, str) else json.dumps(value)}"
           for key, value in (overrides or {}).items()]
  return config_lib.apply_overrides(config, items) if items else config


def load(model_dir: str, *, postprocess_overrides: Optional[Mapping[str, Any]] = None,
         use_ema: bool = True) -> Tuple[tf.Module, config_lib.ExperimentConfig, coco.LabelMap, str]:
  """(model, config, label map, checkpoint prefix) of a trained-model directory.

  The newest complete checkpoint is restored (EMA weights when present and
  `use_ema`); `postprocess_overrides` replace the config's NMS settings.
  """
  # Imported here: building a model pulls in the whole modeling stack.
  from retinanet import factory  # pylint: disable=g-import-not-at-top
  from retinanet.training import checkpointing  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config(config_path(model_dir))
  config = apply_postprocess_overrides(config, postprocess_overrides)
  label_map = coco.load_label_map(label_map_path(model_dir))
  config_lib.check_num_classes(config, label_map.num_classes)
  model = factory.build_model(config.model)
  prefix = checkpointing.restore_model(model, checkpoint_dir(model_dir), use_ema=use_ema)
  return model, config, label_map, prefix
