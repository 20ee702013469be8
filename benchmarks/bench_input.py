"""Input-pipeline throughput on its own (no model): images per second.

Generates the shapes sample dataset (data/sample_data.py), converts it to
GZIP TFRecords with the data stage (data/convert.py), then times, per
setting, three pipelines built by retinanet/dataloader:

  read+decode  TFRecord interleave + decode_example only (the floor)
  train        build_dataset(is_training=True): flip, scale jitter 0.1-2.0,
               crop, normalize, pad, target encoding, batch
  train, no targets   the same without target encoding (its cost by difference)
  eval         build_dataset(is_training=False): resize, pad, batch

Settings: the sample-data config (256 x 256 images and input, batch 16) and
COCO-like 480 x 640 images into a 640 x 640 input (batch 8).

    .venv/bin/python benchmarks/bench_input.py [--num_images 96] [--batches 30] [--write_markdown]

Writes the "## Input pipeline" section of BENCHMARKS.md with --write_markdown.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

import tensorflow as tf  # noqa: E402

from data import convert, sample_data  # noqa: E402
from retinanet import config as config_lib  # noqa: E402
from retinanet.dataloader import decoder, input_reader  # noqa: E402
from retinanet.task import RetinaNetTask  # noqa: E402

HEADING = "## Input pipeline"
SETTINGS = (
    # name, image (height, width), model input, batch size
    ("sample 256", (256, 256), 256, 16),
    ("COCO-like 640", (480, 640), 640, 8),
)


def make_records(root: str, image_size: Sequence[int], num_images: int) -> str:
  """Sample dataset -> TFRecords; returns the train split's file pattern.

  Records already in `root` (an earlier run with the same --work_dir) are reused.
  """
  existing = os.path.join(convert.split_dir(os.path.join(root, "tfrecords"), "train"), "*")
  if tf.io.gfile.glob(existing):
    return existing
  dataset = sample_data.generate_sample_dataset(os.path.join(root, "raw"), num_train=num_images,
                                                num_val=0, image_size=tuple(image_size))
  splits = {"train": dataset.splits["train"]}
  result = convert.convert_coco(splits, os.path.join(root, "tfrecords"), num_shards=4)
  return os.path.join(result.split_dirs["train"], "*")


def decode_only(file_pattern: str, batch_size: int) -> tf.data.Dataset:
  files = input_reader.list_files(file_pattern)
  dataset = tf.data.Dataset.from_tensor_slices(files).interleave(
      lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
      cycle_length=len(files), num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.repeat().map(lambda s: decoder.decode_example(s)[decoder.IMAGE],
                                 num_parallel_calls=tf.data.AUTOTUNE)
  # Images differ in size only across settings, never within one.
  return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def measure(dataset: tf.data.Dataset, batch_size: int, batches: int, warmup: int = 5,
            repeats: int = 3) -> List[Tuple[float, float]]:
  """(images/s wall clock, CPU ms per image) of `repeats` runs of `batches` batches.

  CPU time is the whole process's (all tf.data threads, time.process_time): it
  stays meaningful when other jobs share the cores, where wall clock does not.
  """
  iterator = iter(dataset)
  for _ in range(warmup):
    next(iterator)
  runs = []
  for _ in range(repeats):
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(batches):
      batch = next(iterator)
    tf.nest.map_structure(lambda t: t.numpy(), batch)
    images = batches * batch_size
    runs.append((images / (time.perf_counter() - start),
                 1000.0 * (time.process_time() - cpu_start) / images))
  return runs


def pipelines(file_pattern: str, input_size: int, batch_size: int
              ) -> Dict[str, Callable[[], tf.data.Dataset]]:
  config = config_lib.apply_overrides(config_lib.ExperimentConfig(), [
      f"model.input_size=[{input_size},{input_size}]", "model.num_classes=5",
      f"train.global_batch_size={batch_size}", f"eval.batch_size={batch_size}"])
  deterministic = config_lib.apply_overrides(config, ["input.deterministic=true"])
  train_parser = RetinaNetTask(config).build_parser(is_training=True)

  class AugmentOnly:
    """The train parser without target encoding (its cost by difference)."""

    def __call__(self, decoded, seed):
      return train_parser.augment(decoded, seed)[0]

    def placeholder_element(self):  # what stands in for an undecodable record
      return tf.zeros([input_size, input_size, 3], tf.float32)

  def augment_only() -> tf.data.Dataset:
    return input_reader.build_dataset(
        file_pattern, parser=AugmentOnly(), is_training=True, global_batch_size=batch_size,
        shuffle_buffer=config.input.shuffle_buffer)

  return {
      "read+decode": lambda: decode_only(file_pattern, batch_size),
      "train": lambda: RetinaNetTask(config).build_inputs(file_pattern, is_training=True)(None),
      "train, no targets": augment_only,
      "train (deterministic)": lambda: RetinaNetTask(deterministic).build_inputs(
          file_pattern, is_training=True)(None),
      "eval": lambda: RetinaNetTask(config).build_inputs(
          file_pattern, is_training=False)(None).repeat(),
  }


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--num_images", type=int, default=96)
  parser.add_argument("--batches", type=int, default=30)
  parser.add_argument("--work_dir", default="")
  parser.add_argument("--write_markdown", action="store_true")
  args = parser.parse_args(argv)
  load_start, start = common.load_average(), time.time()
  root = args.work_dir or tempfile.mkdtemp(prefix="bench_input_")
  print(f"TF {tf.__version__}, {os.cpu_count()} CPUs, load average before: "
        f"{common.load_average()[0]:.2f}", flush=True)
  rows = []
  for name, image_size, input_size, batch_size in SETTINGS:
    pattern = make_records(os.path.join(root, f"{image_size[0]}x{image_size[1]}"), image_size,
                           args.num_images)
    for pipeline, build in pipelines(pattern, input_size, batch_size).items():
      runs = measure(build(), batch_size, args.batches)
      wall = statistics.median(r[0] for r in runs)
      cpu_ms = statistics.median(r[1] for r in runs)
      rows.append((name, f"{image_size[0]}x{image_size[1]}", f"{input_size}x{input_size}",
                   batch_size, pipeline, wall, cpu_ms))
      print(f"{name} {pipeline}: {wall:.1f} img/s, {cpu_ms:.1f} CPU ms/image (runs "
            f"{', '.join(f'{w:.1f}/{c:.1f}' for w, c in runs)})", flush=True)
  cores = os.cpu_count() or 1
  lines = [
      HEADING, "",
      common.run_header(common.command_line("bench_input.py", argv), time.time() - start,
                        load_start, common.load_average()) + ".", "",
      "The tf.data pipelines of `retinanet/dataloader` on their own (no model), on sample-shapes "
      f"records converted by the data stage ({args.num_images} images, GZIP); median of 3 runs "
      f"of {args.batches} batches after warm-up. \"img/s if {cores} cores were free\" = "
      f"{cores} / CPU seconds per image.", "",
      f"| setting | images | input | batch | pipeline | img/s (wall) | CPU ms / image "
      f"| img/s if {cores} cores were free |",
      "|---|---|---|---|---|---|---|---|"]
  for name, image, size, batch, pipeline, wall, cpu_ms in rows:
    lines.append(f"| {name} | {image} | {size} | {batch} | {pipeline} | {wall:.1f} | "
                 f"{cpu_ms:.1f} | {1000.0 * cores / cpu_ms:.0f} |")
  common.publish("\n".join(lines), HEADING, args.write_markdown)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
