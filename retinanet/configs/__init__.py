"""Shipped experiment configs (JSON written by `python -m retinanet.configs.generate`).

    load_named_config("coco/retinanet-r50-640-1x-b64-v3-8")   # a shipped name
    load_named_config("/path/to/my.json")                      # or any config file
"""
from __future__ import annotations

import difflib
import os
from typing import List

from retinanet import config as config_lib
from retinanet import fileio

CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))
_SUFFIX = ".json"


def list_configs() -> List[str]:
  """Names of the shipped configs, e.g. "coco/retinanet-r50-640-3x-b256-v3-32", sorted."""
  names = []
  for root, _, files in os.walk(CONFIG_DIR):
    for f in files:
      if f.endswith(_SUFFIX):
        rel = os.path.relpath(os.path.join(root, f), CONFIG_DIR)
        names.append(rel[:-len(_SUFFIX)].replace(os.sep, "/"))
  return sorted(names)


def config_path(name: str) -> str:
  """Path of the shipped config `name` (with or without ".json")."""
  if name.endswith(_SUFFIX):
    name = name[:-len(_SUFFIX)]
  names = list_configs()
  if name not in names:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise config_lib.ConfigError(
        f"no shipped config named {name!r} ({len(names)} under {CONFIG_DIR}; see "
        f"retinanet.configs.list_configs()){hint}")
  return os.path.join(CONFIG_DIR, *name.split("/")) + _SUFFIX


def load_named_config(name_or_path: str) -> config_lib.ExperimentConfig:
  """Loads a config file when `name_or_path` is an existing path (local or gs://),
  else the shipped config of that name; validated with strict keys."""
  if fileio.is_file(name_or_path):
    return config_lib.load_config(name_or_path)
  return config_lib.load_config(config_path(name_or_path))
