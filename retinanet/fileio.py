"""Whole-file reads and writes on local paths or gs:// (tf.io.gfile), parents created.

Local paths use Python's own file functions, so that reading or writing a config
(retinanet/config.py) does not load TensorFlow: the command line answers --help,
--list_configs and config errors in about a second. Remote paths (any
"scheme://") go through tf.io.gfile, imported on first use.
"""
from __future__ import annotations

import json
import os
from typing import Any, List, Type


def is_remote(path: str) -> bool:
  """True for "gs://...", "s3://" and other scheme paths that need tf.io.gfile."""
  return "://" in path


def _gfile():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def exists(path: str) -> bool:
  return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def is_dir(path: str) -> bool:
  return _gfile().isdir(path) if is_remote(path) else os.path.isdir(path)


def glob(pattern: str) -> List[str]:
  """Paths matching a shell pattern (`*`), sorted; local or remote."""
  if is_remote(pattern):
    return sorted(_gfile().glob(pattern))
  import glob as glob_lib  # pylint: disable=g-import-not-at-top
  return sorted(glob_lib.glob(pattern))


def is_file(path: str) -> bool:
  if is_remote(path):
    return _gfile().exists(path) and not _gfile().isdir(path)
  return os.path.isfile(path)


def write_bytes(path: str, data: bytes) -> None:
  parent = os.path.dirname(path)
  if is_remote(path):
    if parent:
      _gfile().makedirs(parent)
    with _gfile().GFile(path, "wb") as f:
      f.write(data)
    return
  if parent:
    os.makedirs(parent, exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)


def write_text(path: str, text: str) -> None:
  write_bytes(path, text.encode("utf-8"))


def write_json(path: str, value: Any, allow_nan: bool = False) -> None:
  """JSON; by default strict (NaN or Inf is an error, not a non-standard token)."""
  write_text(path, json.dumps(value, allow_nan=allow_nan))


def read_bytes(path: str) -> bytes:
  """The file's bytes. A missing file raises FileNotFoundError (local; open() is also
  about twice as fast per file as tf.io.gfile) or tf.errors.NotFoundError (remote)."""
  if is_remote(path):
    with _gfile().GFile(path, "rb") as f:
      return f.read()
  with open(path, "rb") as f:
    return f.read()


def read_json(path: str, error: Type[Exception] = ValueError) -> Any:
  """The parsed file; invalid JSON raises `error` naming the file."""
  text = read_bytes(path).decode("utf-8")
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise error(f"{path}: not valid JSON: {e}") from e
