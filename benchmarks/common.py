"""Shared helpers of the benchmark scripts: machine peak, FLOPs, load, BENCHMARKS.md.

The matmul peak is measured in the benchmark's own process, right beside the
thing it calibrates, so a shared or throttled machine shows up in both
numbers and their ratio (the utilization) stays meaningful.
"""
from __future__ import annotations

import math
import os
import platform
import re
import time
from typing import Callable, Dict, Sequence, Tuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS_MD = os.path.join(ROOT, "BENCHMARKS.md")
PEAK_SIZES = (2048, 4096)
PEAK_CHAIN = 4
PEAK_REPEATS = 5


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
    self.n, self.dtype, self.chain = n, dtype, chain
    self._a = tf.cast(tf.random.normal([n, n], stddev=1.0 / math.sqrt(n), seed=1), dtype)
    self._b = tf.cast(tf.random.normal([n, n], stddev=1.0 / math.sqrt(n), seed=2), dtype)

    @tf.function
    def chained(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
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


def update_markdown_section(section: str, heading: str, path: str = BENCHMARKS_MD) -> None:
  """Replaces the `heading` section of BENCHMARKS.md (up to the next "## ") or appends it.

  Other sections are written concurrently by other scripts: the file is
  re-read right before the write and only this section's text changes.
  """
  if not section.startswith(heading + "\n"):
    raise ValueError(f"section must start with its heading line {heading!r}")
  text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
  pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
  if pattern.search(text):
    text = pattern.sub(lambda _: section.rstrip("\n") + "\n\n", text, count=1)
  else:
    text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
  with open(path, "w") as f:
    f.write(text.rstrip("\n") + "\n")
