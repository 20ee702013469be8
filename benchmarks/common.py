"""What every benchmark script shares: its prologue, the machine peak, FLOPs, load,
sample data, and the BENCHMARKS.md epilogue.

Importing this module is the scripts' prologue: it sets the environment defaults
TensorFlow reads at its import (Keras 2, quiet C++ logs) and puts the repository
root on sys.path. A script imports it first, before TensorFlow or the project:

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import common  # noqa: E402  pylint: disable=g-import-not-at-top

The import itself stays cheap: TensorFlow, numpy, PIL and the project are
imported inside the functions that use them, because some scripts time or
measure the memory of child processes (bench_data.py's raw read) that must not
carry TensorFlow.

The matmul peak is measured in the benchmark's own process, right beside the
thing it calibrates, so a shared or throttled machine shows up in both
numbers and their ratio (the utilization) stays meaningful.
"""
from __future__ import annotations

import json
import math
import os
import platform
import re
import sys
import time
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

# The prologue. Defaults TensorFlow reads when it is imported (nothing above imports it);
# a value set by the caller wins.
ENV_DEFAULTS = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
_ENV_ADDED = tuple(k for k in ENV_DEFAULTS if k not in os.environ)
for _key, _value in ENV_DEFAULTS.items():
  os.environ.setdefault(_key, _value)

# The repository root first on sys.path: `retinanet`, `data` and `pipeline` from this checkout.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if sys.path[:1] != [ROOT]:
  sys.path.insert(0, ROOT)

if TYPE_CHECKING:
  import numpy as np
  import tensorflow as tf

BENCHMARKS_MD = os.path.join(ROOT, "BENCHMARKS.md")
TINY_CONFIG = os.path.join(ROOT, "retinanet", "configs", "sample", "tiny.json")
# The 80 category ids of COCO (1..90 without the 10 unused ones).
COCO_CATEGORY_IDS = [i for i in range(1, 91) if i not in
                     (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
# Annotations per image of COCO train2017 (860,001 over 118,287 images).
COCO_TRAIN_ANNOTATIONS_PER_IMAGE = 860_001 / 118_287
# The serving benchmarks' inputs: sample_images of a typical COCO size (height, width), at
# each batch size.
SERVING_IMAGE_SIZE = (480, 640)
SERVING_BATCH_SIZES = (1, 8)
PEAK_SIZES = (2048, 4096)
PEAK_CHAIN = 4
PEAK_REPEATS = 5


def inherited_environ() -> Dict[str, str]:
  """os.environ without the defaults this module added: for a child (run_pipeline.py) that
  picks its own, so it sees the environment the benchmark was started with."""
  return {k: v for k, v in os.environ.items() if k not in _ENV_ADDED}


def load_average() -> Tuple[float, float, float]:
  """(1, 5, 15)-minute load averages, as `uptime` prints them."""
  return os.getloadavg()


def format_load(load: Sequence[float]) -> str:
  return ", ".join(f"{v:.2f}" for v in load)


def machine_description() -> str:
  """e.g. "2 cores, AMD EPYC (avx2, avx512f, avx512_bf16)": the vector extensions that
  decide float32 / bfloat16 speed (the machine kind changes between sessions)."""
  model, flags = platform.processor() or "unknown CPU", []
  try:
    with open("/proc/cpuinfo") as f:
      first = f.read().split("\n\n")[0]
    for line in first.splitlines():
      key, _, value = line.partition(":")
      if key.strip() == "model name":
        model = value.strip()
      elif key.strip() == "flags":
        flags = [x for x in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if x in value.split()]
        if "avx512f" not in flags:
          flags.append("no AVX-512")
  except OSError:
    pass
  extra = f" ({', '.join(flags)})" if flags else ""
  return f"{os.cpu_count()} cores, {model}{extra}"


class ChainedMatmul:
  """`chain` chained n x n matmuls in one tf.function; 2 n^3 FLOPs each (multiply-add = 2).

  Inputs are scaled by 1/sqrt(n) so the chain neither overflows nor underflows.
  The function is traced and run once on construction.
  """

  def __init__(self, n: int, dtype: tf.DType, chain: int = PEAK_CHAIN):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self.n, self.dtype, self.chain = n, dtype, chain
    self._a = tf.cast(tf.random.normal([n, n], stddev=1.0 / math.sqrt(n), seed=1), dtype)
    self._b = tf.cast(tf.random.normal([n, n], stddev=1.0 / math.sqrt(n), seed=2), dtype)

    @tf.function
    def chained(x, y):
      for _ in range(chain):
        x = tf.matmul(x, y)
      return tf.reduce_sum(tf.cast(x, tf.float32))

    self._fn = chained
    self.seconds()  # trace + warm-up

  @property
  def flops(self) -> float:
    return self.chain * 2.0 * self.n ** 3

  def seconds(self) -> float:
    """Wall seconds of one call."""
    return self.timed()[0]

  def timed(self) -> Tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    return timed_call(lambda: self._fn(self._a, self._b).numpy())


def timed_call(fn: Callable[[], object]) -> Tuple[float, float]:
  """(wall seconds, CPU seconds of all this process's threads) of fn().

  CPU time barely grows while other processes hold the cores, so work per CPU
  second is far less sensitive to a shared machine than work per wall second
  (it still counts the runtime's spin-waiting threads).
  """
  wall, cpu = time.perf_counter(), time.process_time()
  fn()
  return time.perf_counter() - wall, time.process_time() - cpu


def matmul_gflops(n: int, dtype: tf.DType, chain: int = PEAK_CHAIN,
                  repeats: int = PEAK_REPEATS) -> float:
  """Best-of-`repeats` GFLOP/s of `chain` chained n x n matmuls in one tf.function."""
  matmul = ChainedMatmul(n, dtype, chain)
  return matmul.flops / min(matmul.seconds() for _ in range(repeats)) / 1e9


def matmul_peak(dtype: tf.DType, sizes: Sequence[int] = PEAK_SIZES) -> Dict[int, float]:
  """{n: GFLOP/s} for each matrix side; the peak is the max over sizes."""
  return {n: matmul_gflops(n, dtype) for n in sizes}


def graph_flops(fn: Callable[[tf.Tensor], object], input_spec: tf.TensorSpec) -> int:
  """Float ops of fn(input) counted by the TF v1 profiler on the frozen graph.

  Same method as the TF Model Garden: variables folded into constants, then
  `ProfileOptionBuilder.float_operation()`; Conv2D / MatMul count a
  multiply-add as 2 FLOPs, element-wise ops (BiasAdd, Add, Relu ...) 1 per
  element where TF registers a statistic for them.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.python.framework import convert_to_constants  # pylint: disable=g-import-not-at-top
  concrete = tf.function(fn).get_concrete_function(input_spec)
  frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
  graph_def = frozen.graph.as_graph_def()
  with tf.Graph().as_default() as graph:
    tf.graph_util.import_graph_def(graph_def, name="")
    options = (tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
               .with_empty_output().build())
    profile = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(),
                                            cmd="op", options=options)
  return int(profile.total_float_ops)


def code_commit() -> str:
  """The checkout's commit (short hash), "+changes" when the code differs from it."""
  import subprocess  # pylint: disable=g-import-not-at-top

  def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
  commit = git("rev-parse", "--short=7", "HEAD") or "unknown"
  changed = git("status", "--porcelain", "--untracked-files=no", "--", *CODE_DIRS)
  return commit + ("+changes" if changed else "")


# What a measurement depends on: a change under these makes a section out of date.
CODE_DIRS = ("retinanet", "data", "components", "pipeline", "benchmarks", "run_pipeline.py",
             "requirements", "scripts")
PROVENANCE_PREFIX = "_Measured at commit "


def provenance_line(command: str) -> str:
  """The line under each section's heading: the commit, date, machine and command."""
  return (f"{PROVENANCE_PREFIX}`{code_commit()}` on {time.strftime('%Y-%m-%d')}, "
          f"{machine_description()}, by `{command}`._")


def update_markdown_section(section: str, heading: str, path: str = BENCHMARKS_MD,
                            command: Optional[str] = None) -> None:
  """Replaces the `heading` section of BENCHMARKS.md (up to the next "## ") or appends it,
  with the provenance line (commit, date, machine, `command`: this run's) under the heading.

  Other sections are written concurrently by other scripts: the file is
  re-read right before the write and only this section's text changes.
  """
  if not section.startswith(heading + "\n"):
    raise ValueError(f"section must start with its heading line {heading!r}")
  command = command or command_line(os.path.basename(sys.argv[0]))
  body = section[len(heading) + 1:].lstrip("\n")
  section = f"{heading}\n\n{provenance_line(command)}\n\n{body}"
  text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
  pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
  if pattern.search(text):
    text = pattern.sub(lambda _: section.rstrip("\n") + "\n\n", text, count=1)
  else:
    text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
  with open(path, "w") as f:
    f.write(text.rstrip("\n") + "\n")


# ---------------------------------------------------------------- the epilogue


def command_line(script: str, argv: Optional[Sequence[str]] = None) -> str:
  """"python benchmarks/<script> <arguments>" as this run was started (argv, else sys.argv)."""
  return f"python benchmarks/{script}" + (" " + " ".join(argv or sys.argv[1:])).rstrip()


def run_header(command: str, seconds: float, load_start: Sequence[float],
               load_end: Sequence[float], shared: str = "shared with other jobs") -> str:
  """The opening words of a section: "Command: `...` (N s in all). Machine: ..., shared ...:
  load average (1, 5, 15 min) ... at the start, ... at the end" (the caller ends the sentence)."""
  return (f"Command: `{command}` ({seconds:.0f} s in all). Machine: {machine_description()}, "
          f"{shared}: load average (1, 5, 15 min) {format_load(load_start)} at the start, "
          f"{format_load(load_end)} at the end")


def publish(section: str, heading: str, write_markdown: bool) -> None:
  """Prints `section`; with write_markdown it also replaces the `heading` section of
  BENCHMARKS.md (update_markdown_section)."""
  print(section)
  if write_markdown:
    update_markdown_section(section, heading)


# ---------------------------------------------------------------- models and data


def resnet_label(backbone, prefix: str = "R") -> str:
  """e.g. "R18 x0.5" of a backbone config: depth, and the width multiplier when not 1."""
  width = getattr(backbone, "width_multiplier", 1.0)
  return f"{prefix}{backbone.depth}{f' x{width:g}' if width != 1 else ''}"


def weight_count(model) -> int:
  """Values of a model's variables, batch-norm moving statistics excluded."""
  return int(sum(v.shape.num_elements() for v in model.variables if "moving_" not in v.name))


def placeholder_label_map(num_classes: int):
  """A coco.LabelMap of category ids 1..num_classes named class_0, class_1, ...: for models
  with random weights, exported without a dataset."""
  from retinanet import coco  # pylint: disable=g-import-not-at-top
  return coco.LabelMap(tuple(range(1, num_classes + 1)),
                       tuple(f"class_{i}" for i in range(num_classes)))


def process_tree(proc) -> list:
  """A psutil.Process and all its descendants ([] once it has exited)."""
  import psutil  # pylint: disable=g-import-not-at-top
  try:
    return [proc] + proc.children(recursive=True)
  except psutil.NoSuchProcess:
    return []


def write_records(directory: str, image_size, num_images: int = 16) -> str:
  """Sample-shapes images as one TFRecord file (data.sample_data + data.example_codec);
  returns its path."""
  from data import example_codec, sample_data  # pylint: disable=g-import-not-at-top
  from retinanet import coco  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  raw = sample_data.generate_sample_dataset(os.path.join(directory, "raw"), num_train=num_images,
                                            num_val=0, image_size=image_size)
  ann_path, image_dir = raw.splits["train"]
  with open(ann_path) as f:
    data = json.load(f)
  label_map = coco.LabelMap.from_categories(data["categories"])
  by_image: Dict[int, list] = {}
  for ann in data["annotations"]:
    by_image.setdefault(ann["image_id"], []).append(ann)
  path = os.path.join(directory, "train.tfrecord")
  with tf.io.TFRecordWriter(path) as writer:
    for image in data["images"]:
      with open(os.path.join(image_dir, image["file_name"]), "rb") as f:
        example, _ = example_codec.build_example(f.read(), image,
                                                 by_image.get(image["id"], []), label_map)
      writer.write(example.SerializeToString())
  return path


def sample_images(batch: int, image_size: Sequence[int] = SERVING_IMAGE_SIZE) -> np.ndarray:
  """Smooth random uint8 images [batch, height, width, 3] (seeded numpy, JPEG-friendly)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(batch)
  images = []
  for _ in range(batch):
    small = rng.randint(0, 256, (image_size[0] // 16, image_size[1] // 16, 3)).astype(np.uint8)
    images.append(np.asarray(Image.fromarray(small).resize(tuple(image_size[::-1]),
                                                           Image.BILINEAR)))
  return np.stack(images)


def time_round_robin(fns: Sequence[Callable[[], object]], warmup: int,
                     runs: int) -> List[Tuple[List[float], List[float]]]:
  """(wall seconds, CPU seconds) of `runs` calls of each fn, interleaved (fn0, fn1, ..., fn0, ...).

  On a shared machine the load drifts; interleaving lets every fn see the
  same conditions, so their ratios stay meaningful. `warmup` untimed rounds first.
  """
  for _ in range(warmup):
    for fn in fns:
      fn()
  seconds = [([], []) for _ in fns]
  for _ in range(runs):
    for fn, (wall, cpu) in zip(fns, seconds):
      wall_s, cpu_s = timed_call(fn)
      wall.append(wall_s)
      cpu.append(cpu_s)
  return seconds
