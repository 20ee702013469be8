"""A trained-model directory: the Trainer's Model artifact, an export, a pushed version.

Layout (one definition for the trainer, evaluator, exporter and fine-tuning):
    <dir>/checkpoint/      tf.train checkpoints (model, optimizer, EMA, ...)
    <dir>/config.json      the ExperimentConfig it was trained with
    <dir>/label_map.json   contiguous class index <-> original category id and name
    <dir>/saved_model.pb, variables/   the served SavedModel (exports, pushed versions)

The Trainer's Model artifact follows TFX's serving-model layout: all of the
above lives in `<artifact uri>/Format-Serving/` (what TFX's Pusher, TFMA and
InfraValidator read), so the artifact is what is served and can be fine-tuned
from. `resolve` maps either form to the directory holding the files; file names are
retinanet/layout.py's and `retinanet.task.load_model_dir` restores the model.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional

import tensorflow as tf

from retinanet import config as config_lib
from retinanet import layout


def serving_model_dir(artifact_uri: str) -> str:
  """`<Model artifact uri>/Format-Serving`: where the Trainer writes the model."""
  return os.path.join(artifact_uri, layout.SERVING_MODEL_DIR)


def resolve(model_dir: str) -> str:
  """The directory holding config.json: `model_dir/Format-Serving` when that exists
  (a Model artifact), else `model_dir` itself (an export or pushed version)."""
  serving = serving_model_dir(model_dir)
  return serving if tf.io.gfile.exists(os.path.join(serving, layout.CONFIG_FILE)) else model_dir


def checkpoint_dir(model_dir: str) -> str:
  return os.path.join(resolve(model_dir), layout.CHECKPOINT_DIR)


def config_path(model_dir: str) -> str:
  return os.path.join(resolve(model_dir), layout.CONFIG_FILE)


def label_map_path(model_dir: str) -> str:
  return os.path.join(resolve(model_dir), layout.LABEL_MAP_FILE)


def has_saved_model(model_dir: str) -> bool:
  return tf.io.gfile.exists(os.path.join(resolve(model_dir), layout.SAVED_MODEL_FILE))


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
