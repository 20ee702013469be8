"""Pushing an exported model into a versioned serving directory.

TF Serving's layout is `<base>/<version>/saved_model.pb` with integer
versions; it loads the highest version and ignores other names. A push first
writes into `<base>/.tmp-<version>` (ignored by TF Serving), optionally
validates that copy (`validate`, e.g. loading it in a fresh process), then
moves it to `<base>/<version>`: a rename on local disks (atomic), a copy on
object stores (gs://) in which `saved_model.pb` is copied last, so a poller
never sees a version that has a `saved_model.pb` but not its variables. A
copy that fails validation is deleted and never becomes a version.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Callable, List, Mapping, Optional

import tensorflow as tf

from retinanet import layout

logger = logging.getLogger(__name__)


def list_versions(base_dir: str) -> List[int]:
  """Integer version sub-directories of `base_dir` that hold a saved_model.pb, ascending."""
  if not tf.io.gfile.isdir(base_dir):
    return []
  versions = []
  for name in tf.io.gfile.listdir(base_dir):
    name = name.rstrip("/")
    if name.isdigit() and tf.io.gfile.exists(os.path.join(base_dir, name, layout.SAVED_MODEL_FILE)):
      versions.append(int(name))
  return sorted(versions)


def latest_version_dir(base_dir: str) -> Optional[str]:
  """`<base_dir>/<highest version>`, or None when nothing was pushed."""
  versions = list_versions(base_dir)
  return os.path.join(base_dir, str(versions[-1])) if versions else None


def next_version(base_dir: str, now: Optional[float] = None) -> int:
  """A version above every existing one: the Unix time, or last + 1 if that is not larger."""
  stamp = int(now if now is not None else time.time())
  versions = list_versions(base_dir)
  return max([stamp] + [v + 1 for v in versions])


def _copy_tree(src: str, dst: str, last: str = layout.SAVED_MODEL_FILE) -> None:
  """Recursively copies src into dst, copying any file named `last` at the very end."""
  deferred = []
  for root, _, files in tf.io.gfile.walk(src):
    rel = os.path.relpath(root, src)
    target_root = dst if rel == "." else os.path.join(dst, rel)
    tf.io.gfile.makedirs(target_root)
    for name in files:
      pair = (os.path.join(root, name), os.path.join(target_root, name))
      if name == last:
        deferred.append(pair)
      else:
        tf.io.gfile.copy(*pair, overwrite=True)
  for pair in deferred:
    tf.io.gfile.copy(*pair, overwrite=True)


def push_directory(export_dir: str, base_dir: str, version: Optional[int] = None,
                   validate: Optional[Callable[[str], None]] = None,
                   extras: Optional[Mapping[str, str]] = None) -> str:
  """Publishes `export_dir` as a new version under `base_dir`; returns the version dir.

  `extras` ({path relative to the version dir: file}) are copied into the staged
  version too (e.g. formats/model.onnx). `validate(staged_dir)` runs on the
  staged copy before it becomes visible; if it raises, the copy is deleted and
  the exception propagates (nothing pushed).
  """
  version = version if version is not None else next_version(base_dir)
  final_dir = os.path.join(base_dir, str(version))
  if tf.io.gfile.exists(final_dir):
    raise FileExistsError(f"serving version {final_dir} already exists; versions are immutable")
  tf.io.gfile.makedirs(base_dir)
  staging = os.path.join(base_dir, f".tmp-{version}")
  if tf.io.gfile.exists(staging):
    tf.io.gfile.rmtree(staging)
  _copy_tree(export_dir, staging)
  for relative, path in (extras or {}).items():
    target = os.path.join(staging, relative)
    tf.io.gfile.makedirs(os.path.dirname(target))
    tf.io.gfile.copy(path, target, overwrite=True)
  if validate is not None:
    try:
      validate(staging)
    except Exception:
      tf.io.gfile.rmtree(staging)
      raise
  if base_dir.startswith("gs://"):
    _copy_tree(staging, final_dir)
    tf.io.gfile.rmtree(staging)
  else:
    tf.io.gfile.rename(staging, final_dir)
  logger.info("Pushed %s to %s", export_dir, final_dir)
  return final_dir
