"""Whole-file reads and writes on local paths or gs:// (tf.io.gfile), parents created."""
from __future__ import annotations

import json
import os
from typing import Any, Type

import tensorflow as tf


def write_bytes(path: str, data: bytes) -> None:
  parent = os.path.dirname(path)
  if parent:
    tf.io.gfile.makedirs(parent)
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(data)


def write_text(path: str, text: str) -> None:
  write_bytes(path, text.encode("utf-8"))


def write_json(path: str, value: Any, allow_nan: bool = False) -> None:
  """JSON; by default strict (NaN or Inf is an error, not a non-standard token)."""
  write_text(path, json.dumps(value, allow_nan=allow_nan))


def read_json(path: str, error: Type[Exception] = ValueError) -> Any:
  """The parsed file; invalid JSON raises `error` naming the file."""
  with tf.io.gfile.GFile(path, "r") as f:
    text = f.read()
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise error(f"{path}: not valid JSON: {e}") from e


def read_bytes(path: str) -> bytes:
  with tf.io.gfile.GFile(path, "rb") as f:
    return f.read()
