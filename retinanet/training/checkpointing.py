"""Training checkpoints: what is saved, where, and how a run finds a usable one.

A training checkpoint is `tf.train.Checkpoint(model=..., optimizer=...,
[ema=...], [loss_normalizer=...], [iterator=...])` written by a
`tf.train.CheckpointManager` as `<model_dir>/ckpt-<step>` (step = the
optimizer's `iterations`, i.e. updates applied).

Atomicity (TF 2.16 sources, checked in tests): `Checkpoint.write` saves each
shard to `<prefix>_temp/part-*` and `MergeV2Checkpoints` then moves the
`.data-*` files and writes `<prefix>.index`; only after the write returns does
the manager's write callback rewrite the `checkpoint` state file, itself
with `atomic_write_string_to_file` (temp file + rename). So "latest" never
names a checkpoint whose write has not finished on a POSIX file system. A
checkpoint can still be partial (index without all data shards) after a
copy that broke off or a file system without atomic rename; the restore
helpers below skip such a checkpoint and fall back to the previous one.

The input iterator is saved only when it is trackable: with TF 2.16 the
`DistributedIterator` of `distribute_datasets_from_function` under
Mirrored/MultiWorker/TPU strategies is not (tf.train.Checkpoint rejects
it), so those runs restart the input pipeline on resume; the default
strategy's plain tf.data iterator is saved and resumes exactly.
"""
from __future__ import annotations

import collections
import logging
import os
import re
from typing import Dict, List, Optional

import tensorflow as tf

from retinanet import fileio

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "ckpt"
VARIABLE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_DATA_FILE = re.compile(r"\.data-(\d{5})-of-(\d{5})$")


def _escape(name: str) -> str:
  """tf.train.Checkpoint's escaping of one object-graph edge name."""
  return name.replace(".", "..").replace("/", ".S")


def variable_paths(root: tf.Module) -> Dict[str, tf.Variable]:
  """{object-graph path: variable} for every variable reachable from `root`.

  The path is the one tf.train.Checkpoint uses (breadth-first, first path
  found wins, edges escaped), so `<prefix>/<path>/.ATTRIBUTES/VARIABLE_VALUE`
  is the variable's key in a checkpoint whose object `<prefix>` is `root`
  (e.g. "model/backbone/stem_conv/kernel").
  """
  paths: Dict[str, tf.Variable] = {}
  seen = {id(root)}
  queue = collections.deque([(root, "")])
  keep_alive = [root]
  while queue:
    obj, path = queue.popleft()
    for name, child in tf.train.TrackableView.children(obj).items():
      if id(child) in seen:
        continue
      seen.add(id(child))
      keep_alive.append(child)
      child_path = f"{path}/{_escape(name)}" if path else _escape(name)
      if isinstance(child, tf.Variable):
        paths[child_path] = child
      queue.append((child, child_path))
  return paths


# The EMA averages' place in a training checkpoint (retinanet/training/ema.py writes them).
EMA_CHECKPOINT_PREFIX = "ema"


def ema_average_path(path: str) -> str:
  """Object path (below EMA_CHECKPOINT_PREFIX) of the average of the model variable at `path`."""
  return "averages/" + _escape(path)


def checkpoint_key(prefix: str, path: str) -> str:
  return f"{prefix}/{path}{VARIABLE_SUFFIX}" if prefix else f"{path}{VARIABLE_SUFFIX}"


def is_complete(prefix: str) -> bool:
  """True when `<prefix>.index` and every `<prefix>.data-i-of-n` shard exist and are readable."""
  if not tf.io.gfile.exists(prefix + ".index"):
    return False
  data_files = tf.io.gfile.glob(prefix + ".data-*")
  counts = {m.group(2) for m in (_DATA_FILE.search(f) for f in data_files) if m}
  if len(counts) != 1:
    return False
  num_shards = int(counts.pop())
  expected = {f"{prefix}.data-{i:05d}-of-{num_shards:05d}" for i in range(num_shards)}
  if not expected.issubset(set(data_files)):
    return False
  try:
    tf.train.load_checkpoint(prefix)
  except (tf.errors.OpError, ValueError):
    return False
  return True


def checkpoints_newest_first(directory: str) -> List[str]:
  """Prefixes listed by the `checkpoint` state file of `directory`, newest first."""
  state = tf.train.get_checkpoint_state(directory)
  if state is None:
    return []
  prefixes = list(state.all_model_checkpoint_paths)
  if state.model_checkpoint_path and state.model_checkpoint_path not in prefixes:
    prefixes.append(state.model_checkpoint_path)
  resolved = [p if os.path.isabs(p) or fileio.is_remote(p) else os.path.join(directory, p) for p in prefixes]
  return list(reversed(resolved))


def latest_complete_checkpoint(directory: str) -> Optional[str]:
  """The newest complete checkpoint of `directory`; partial ones are skipped with a warning."""
  for prefix in checkpoints_newest_first(directory):
    if is_complete(prefix):
      return prefix
    logger.warning("Checkpoint %s is incomplete (index or data shards missing or unreadable); "
                   "falling back to the previous checkpoint", prefix)
  return None


def find_checkpoint(path: str) -> str:
  """A checkpoint prefix from a prefix, a checkpoint directory, or any directory holding one.

  Accepts `<dir>/ckpt-100`, `<dir>` with a `checkpoint` state file, or a
  directory (e.g. a pushed model) with a checkpoint anywhere below it, e.g.
  `<model_dir>/checkpoint/ckpt-100`; the newest complete one wins.
  """
  if tf.io.gfile.exists(path + ".index"):
    if not is_complete(path):
      raise ValueError(f"checkpoint {path} is incomplete: index or data shards missing")
    return path
  if not tf.io.gfile.isdir(path):
    raise FileNotFoundError(f"no checkpoint at {path!r}: expected a checkpoint prefix "
                            f"(with {path}.index) or a directory containing one")
  found = latest_complete_checkpoint(path)
  if found:
    return found
  candidates = []
  for dirpath, _, filenames in tf.io.gfile.walk(path):
    if "checkpoint" in filenames:
      prefix = latest_complete_checkpoint(dirpath)
      if prefix:
        candidates.append(prefix)
    candidates.extend(os.path.join(dirpath, f)[:-len(".index")] for f in filenames
                      if f.endswith(".index") and tf.io.gfile.exists(os.path.join(dirpath, f)))
  complete = [c for c in dict.fromkeys(candidates) if is_complete(c)]
  if not complete:
    raise FileNotFoundError(f"no complete tf checkpoint found in {path!r} or below it")
  return max(complete, key=lambda p: tf.io.gfile.stat(p + ".index").mtime_nsec)


def make_checkpoint(*, model: tf.Module, optimizer: Optional[tf.Module] = None,
                    ema: Optional[tf.Module] = None,
                    loss_normalizer: Optional[tf.Module] = None,
                    iterator: Optional[object] = None) -> tf.train.Checkpoint:
  """The training checkpoint object; `iterator` is included only when it is trackable."""
  parts = {"model": model}
  if optimizer is not None:
    parts["optimizer"] = optimizer
  if ema is not None:
    parts["ema"] = ema
  if loss_normalizer is not None:
    parts["loss_normalizer"] = loss_normalizer
  if iterator is not None and is_trackable(iterator):
    parts["iterator"] = iterator
  return tf.train.Checkpoint(**parts)


def is_trackable(obj: object) -> bool:
  try:
    tf.train.Checkpoint(probe=obj)
  except (ValueError, TypeError):
    return False
  return True


def restore_model(model: tf.Module, path: str, *, use_ema: bool = True) -> str:
  """Loads model weights from a training checkpoint (for evaluation or export).

  `path` is anything `find_checkpoint` accepts. With use_ema and an `ema`
  object in the checkpoint, the exponential moving averages replace the
  trained values of the variables they cover. Returns the prefix used.
  Every model variable must be in the checkpoint (ValueError naming the missing ones).
  """
  prefix = find_checkpoint(path)
  reader = tf.train.load_checkpoint(prefix)
  available = reader.get_variable_to_shape_map()
  model_vars = variable_paths(model)
  missing = [p for p in model_vars if checkpoint_key("model", p) not in available]
  if missing:
    raise ValueError(f"checkpoint {prefix} lacks {len(missing)} model variables, e.g. "
                     f"{missing[:5]}: it was written for a different model configuration")
  status = tf.train.Checkpoint(model=model).read(prefix)
  status.assert_existing_objects_matched().expect_partial()
  applied = 0
  if use_ema:
    for path_, var in model_vars.items():
      key = checkpoint_key(EMA_CHECKPOINT_PREFIX, ema_average_path(path_))
      if key in available:
        var.assign(tf.cast(reader.get_tensor(key), var.dtype))
        applied += 1
  logger.info("Restored model from %s%s", prefix,
              f" with EMA weights for {applied} variables" if applied else "")
  return prefix
