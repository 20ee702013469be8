"""TFRecord files -> batched, prefetched tf.data pipeline.

`build_dataset` takes explicit arguments and a parser (parser.TrainParser or
parser.EvalParser); `retinanet.task.RetinaNetTask.build_inputs` is the one place
that maps the config tree onto them, returning a `fn(input_context)` for
`strategy.distribute_datasets_from_function`.

Sharding: with several input pipelines (multi-worker), FILES are split
between pipelines (pipeline i reads files i, i + n, ...). With fewer files
than pipelines every pipeline reads all files in a fixed order and keeps
every n-th record instead.

Evaluation sees every record exactly once: no shuffle, no repeat, no
dropped remainder. With `pad_last_batch` (the default for eval) the last
batch is padded to the full batch size so shapes stay static; padded rows
hold 0 in float tensors, -1 in integer tensors (image_id -1) and False in
bool tensors (labels["is_valid"] False): skip rows where is_valid is False.
"""
from __future__ import annotations

import dataclasses
import logging
import random
from typing import Callable, Dict, List, Optional, Sequence, Union

import tensorflow as tf

from retinanet.dataloader import decoder
from retinanet.dataloader import parser as parser_lib

logger = logging.getLogger(__name__)

ParserFn = Callable[[Dict[str, tf.Tensor], tf.Tensor], parser_lib.Element]
FilePatterns = Union[str, Sequence[str]]

_AUTO = "auto"


def list_files(file_pattern: FilePatterns) -> List[str]:
  """Sorted, de-duplicated files matching one pattern or a list of patterns / paths."""
  patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
  if not patterns:
    raise ValueError("input_reader: no file pattern given")
  files = set()
  for pattern in patterns:
    matched = tf.io.gfile.glob(pattern)
    if not matched:
      raise FileNotFoundError(
          f"input_reader: no TFRecord files match {pattern!r}; check the examples path and split "
          f"name (e.g. <examples_uri>/Split-train/*)")
    files.update(matched)
  return sorted(files)


def infer_compression(files: Sequence[str]) -> str:
  """'GZIP' when every file ends in .gz, '' when none does; mixed lists are an error."""
  gz = [f.endswith(".gz") for f in files]
  if all(gz):
    return "GZIP"
  if not any(gz):
    return ""
  raise ValueError(f"input_reader: files mix .gz and uncompressed TFRecords ({files[0]!r}, ...); "
                   "pass compression_type explicitly or separate them")


def shard_files(files: Sequence[str], num_pipelines: int, pipeline_id: int) -> List[str]:
  """Files of one input pipeline: every num_pipelines-th starting at pipeline_id."""
  return list(files[pipeline_id::num_pipelines])


def _element_seed(base_seed: int, pipeline_id: int, index: tf.Tensor) -> tf.Tensor:
  """int64 [2] stateless seed, distinct per (base seed, pipeline, element index)."""
  pipeline_seed = tf.constant([base_seed, pipeline_id], tf.int64)
  return tf.random.experimental.stateless_fold_in(pipeline_seed, index)


def pad_batch(element, batch_size: int, padding_element):
  """Appends copies of `padding_element` (one unbatched row) to reach batch_size rows."""
  def pad(t: tf.Tensor, row: tf.Tensor) -> tf.Tensor:
    missing = batch_size - tf.shape(t)[0]
    multiples = tf.concat([[missing], tf.ones_like(tf.shape(row))], axis=0)
    rows = tf.tile(tf.cast(row, t.dtype)[tf.newaxis], multiples)
    padded = tf.concat([t, rows], axis=0)
    padded.set_shape([batch_size] + t.shape.as_list()[1:])
    return padded
  return tf.nest.map_structure(pad, element, padding_element)


@dataclasses.dataclass(frozen=True)
class _PipelinePlan:
  """What one input pipeline reads and how it batches."""
  files: List[str]
  pipeline_id: int
  num_pipelines: int
  batch_size: int
  shard_records: bool   # fewer files than pipelines: every pipeline keeps every n-th record


def _plan_pipeline(files: List[str], input_context: Optional[tf.distribute.InputContext],
                   global_batch_size: int, split: str) -> _PipelinePlan:
  num_pipelines = input_context.num_input_pipelines if input_context else 1
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  batch_size = (input_context.get_per_replica_batch_size(global_batch_size)
                if input_context else global_batch_size)
  shard_records = num_pipelines > 1 and len(files) < num_pipelines
  if num_pipelines > 1 and not shard_records:
    logger.warning("[Worker ID %d] Using %d/%d %s tfrecords", pipeline_id,
                   len(files[pipeline_id::num_pipelines]), len(files), split)
    files = shard_files(files, num_pipelines, pipeline_id)
  elif shard_records:
    logger.warning("[Worker ID %d] Only %d %s tfrecords for %d input pipelines: every pipeline "
                   "reads all files and keeps every %d-th record", pipeline_id, len(files), split,
                   num_pipelines, num_pipelines)
  logger.info("[Worker ID %d] Using per_replica batch_size of %d for %s", pipeline_id,
              batch_size, split)
  return _PipelinePlan(files, pipeline_id, num_pipelines, batch_size, shard_records)


def _read_records(plan: _PipelinePlan, *, is_training: bool, compression_type: str,
                  cycle_length: int, shuffle_buffer: int, ordered: bool, base_seed: int,
                  max_records: int) -> tf.data.Dataset:
  """Serialized records of the plan's files: shuffled and repeated for training."""
  dataset = tf.data.Dataset.from_tensor_slices(plan.files)
  if is_training and not plan.shard_records:
    dataset = dataset.shuffle(len(plan.files), seed=base_seed, reshuffle_each_iteration=True)
  dataset = dataset.interleave(
      lambda f: tf.data.TFRecordDataset(f, compression_type=compression_type),
      cycle_length=max(1, min(cycle_length, len(plan.files))),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=ordered)
  if plan.shard_records:
    dataset = dataset.shard(plan.num_pipelines, plan.pipeline_id)
  if max_records > 0:
    dataset = dataset.take(max_records)
  if is_training:
    dataset = dataset.shuffle(shuffle_buffer, seed=base_seed, reshuffle_each_iteration=True)
    dataset = dataset.repeat()
  return dataset


def _parse_records(dataset: tf.data.Dataset, parser: ParserFn, *, base_seed: int,
                   pipeline_id: int, is_training: bool, skip_undecodable: bool,
                   deterministic: bool) -> tf.data.Dataset:
  """Decoded and parsed elements, each with its own augmentation seed."""

  # Plain graph code (no Python control flow on tensors): skip AutoGraph conversion.
  @tf.autograph.experimental.do_not_convert
  def decode_and_parse(index: tf.Tensor, serialized: tf.Tensor) -> parser_lib.Element:
    seed_tensor = _element_seed(base_seed, pipeline_id, index)
    return parser(decoder.decode_example(serialized), seed_tensor)

  if not (is_training and skip_undecodable):
    return dataset.enumerate().map(decode_and_parse, num_parallel_calls=tf.data.AUTOTUNE,
                                   deterministic=deterministic or not is_training)
  # A record that fails to decode (a corrupt image that reached the TFRecords) is
  # replaced by the parser's placeholder, which the trainer counts, instead of
  # stopping a long run. Each record is parsed inside its own one-element
  # dataset so that ignore_errors() can drop exactly it.
  placeholder = tf.data.Dataset.from_tensors(parser.placeholder_element())

  def decode_or_placeholder(index: tf.Tensor, serialized: tf.Tensor) -> tf.data.Dataset:
    parsed = tf.data.Dataset.from_tensors((index, serialized)).map(decode_and_parse)
    return parsed.ignore_errors().concatenate(placeholder).take(1)

  return dataset.enumerate().interleave(
      decode_or_placeholder, cycle_length=tf.data.AUTOTUNE, block_length=1,
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def _check_batching(parser: ParserFn, is_training: bool, global_batch_size: int,
                    pad_last_batch: Optional[bool]) -> bool:
  """Validates the batching arguments; returns whether to pad the last batch."""
  if global_batch_size < 1:
    raise ValueError(f"build_dataset: global_batch_size={global_batch_size} must be >= 1")
  if pad_last_batch is None:
    pad_last_batch = not is_training
  if pad_last_batch and is_training:
    raise ValueError("build_dataset: pad_last_batch is for evaluation "
                     "(training drops the remainder)")
  if pad_last_batch and not hasattr(parser, "padding_element"):
    raise ValueError(f"build_dataset: pad_last_batch needs a parser with padding_element() "
                     f"(parser.EvalParser); {type(parser).__name__} has none")
  return pad_last_batch


def build_dataset(file_pattern: FilePatterns, *, parser: ParserFn, is_training: bool,
                  global_batch_size: int,
                  input_context: Optional[tf.distribute.InputContext] = None,
                  shuffle_buffer: int = 1024, cycle_length: int = 16,
                  deterministic: bool = False, seed: int = 0,
                  compression_type: str = _AUTO,
                  pad_last_batch: Optional[bool] = None,
                  max_records: int = 0, skip_undecodable: bool = True) -> tf.data.Dataset:
  """Batched dataset of `parser` outputs read from TFRecord files.

  Args:
    file_pattern: glob pattern(s) or paths of TFRecord files (listed, sorted).
    parser: callable (decoded dict, seed int64 [2]) -> (image, labels).
    is_training: shuffle files and records, repeat forever, drop the last
      partial batch. Otherwise: one pass in file order, remainder kept.
    global_batch_size: batch over all replicas; each pipeline batches
      input_context.get_per_replica_batch_size(global_batch_size).
    input_context: from distribute_datasets_from_function; None = one pipeline.
    shuffle_buffer, cycle_length: record shuffle buffer, files read at once.
    deterministic: fixed element order and augmentation seeds derived from
      `seed`, so two runs give identical batches. Otherwise seeds are drawn
      from the OS per call and tf.data may reorder elements for speed.
    compression_type: "GZIP", "" or "auto" (from the .gz file extension).
    pad_last_batch: pad the last eval batch to the batch size with
      `parser.padding_element()` rows; default True for eval, not allowed for
      training.
    max_records: read at most this many records per pipeline (0 = all).
    skip_undecodable: training only: a record that fails to decode becomes the
      parser's `placeholder_element()` (counted by the trainer as skipped)
      instead of an error that ends the run.
  """
  pad_last_batch = _check_batching(parser, is_training, global_batch_size, pad_last_batch)
  split = "train" if is_training else "eval"
  files = list_files(file_pattern)
  logger.info("Found %d %s tfrecords matching %s", len(files), split, file_pattern)
  if compression_type == _AUTO:
    compression_type = infer_compression(files)
  plan = _plan_pipeline(files, input_context, global_batch_size, split)
  base_seed = seed if deterministic else random.SystemRandom().randrange(2**62)
  dataset = _read_records(
      plan, is_training=is_training, compression_type=compression_type,
      cycle_length=cycle_length, shuffle_buffer=shuffle_buffer, base_seed=base_seed,
      # Record sharding needs the same record order in every pipeline.
      ordered=deterministic or plan.shard_records or not is_training, max_records=max_records)
  dataset = _parse_records(dataset, parser, base_seed=base_seed, pipeline_id=plan.pipeline_id,
                           is_training=is_training, skip_undecodable=skip_undecodable,
                           deterministic=deterministic)
  dataset = dataset.batch(plan.batch_size, drop_remainder=is_training)
  if pad_last_batch:
    padding = parser.padding_element()
    dataset = dataset.map(lambda *element: pad_batch(element, plan.batch_size, padding))
  dataset = dataset.prefetch(tf.data.AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = deterministic
  # Sharding is done above; never let tf.distribute re-shard the pipeline.
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
  return dataset.with_options(options)


