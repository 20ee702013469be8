"""Forward-pass throughput of RetinaNet on this CPU, against the in-process matmul peak.

    .venv/bin/python benchmarks/bench_model.py [--warmup 2] [--iters 5] [--write_markdown]

Measures, in one process:
  * the matmul peak (tf.matmul 2048^2 and 4096^2, 4 chained in a tf.function,
    best of 5) in float32 and bfloat16;
  * FLOPs per image of each model (TF v1 profiler `float_operation` on the
    frozen forward graph, batch 1; a multiply-add counts 2 FLOPs);
  * images/s of `model(images, training=False)` in a tf.function (no
    anchors decode, no NMS) on random input, batch 2, float32 and
    mixed_bfloat16 (policy set before the model is built), for RetinaNet
    ResNet-50 FPN 640x640 (80 classes, 9 anchors) and the tiny sample config.

Utilization = FLOPs/image x images/s / matmul peak of the same dtype. On a
shared machine the wall-clock peak and model speed swing with the other jobs,
so the chained 2048^2 matmul also runs after every timed model step, and both
are also measured per CPU second of this process: model GFLOP per CPU second /
matmul GFLOP per CPU second is the load-insensitive utilization.
Writes the "## Model forward pass" section of BENCHMARKS.md with --write_markdown.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from retinanet import config as config_lib  # noqa: E402
from retinanet import factory  # noqa: E402

HEADING = "## Model forward pass"
BATCH_SIZE = 2
PRECISIONS = ("float32", "mixed_bfloat16")
# TF Model Garden R50-FPN RetinaNet at 640x640 (/work/shared/REFERENCE_FIGURES.md).
MODEL_GARDEN_GFLOPS = 194.0
MODEL_GARDEN_IMAGES_PER_S = 1.16
INTERLEAVED_PEAK_SIZE = 2048


@dataclasses.dataclass
class Result:
  model: str
  precision: str
  input_size: Sequence[int]
  params: int
  gflops_per_image: float
  step_seconds: List[float]
  step_cpu_seconds: List[float]
  # Best GFLOP/s of the chained 2048^2 matmul run after each timed step (same dtype),
  # per wall second and per CPU second of this process.
  interleaved_peak: float
  interleaved_cpu_peak: float

  @property
  def best_images_per_s(self) -> float:
    return BATCH_SIZE / min(self.step_seconds)

  @property
  def median_images_per_s(self) -> float:
    return BATCH_SIZE / statistics.median(self.step_seconds)

  @property
  def gflop_per_cpu_s(self) -> float:
    """Model GFLOPs per CPU second (best step)."""
    return self.gflops_per_image * BATCH_SIZE / min(self.step_cpu_seconds)

  @property
  def idle_images_per_s(self) -> float:
    """img/s if every core ran this process: best img/s per CPU second x cores."""
    return BATCH_SIZE / min(self.step_cpu_seconds) * (os.cpu_count() or 1)

  @property
  def cpu_utilization(self) -> float:
    """Model GFLOP per CPU second / matmul GFLOP per CPU second (both best)."""
    return self.gflop_per_cpu_s / self.interleaved_cpu_peak


def r50_config() -> config_lib.ModelConfig:
  """The default ModelConfig: ResNet-50 FPN P3-P7, 640x640, 80 classes, 9 anchors."""
  model = config_lib.ExperimentConfig().model
  assert (model.backbone.depth, tuple(model.input_size), model.num_classes,
          model.num_anchors_per_location) == (50, (640, 640), 80, 9), model
  return model


def time_forward(model: tf.Module, input_size: Sequence[int], warmup: int, iters: int,
                 matmul: common.ChainedMatmul
                 ) -> Tuple[List[Tuple[float, float]], List[Tuple[float, float]]]:
  """((wall, CPU) seconds per batch of `iters` timed forward passes after `warmup`
  untimed ones, (wall, CPU) seconds of `matmul` run once after each timed pass).

  Interleaving puts the peak measurement in the same time window as the model,
  so both see the same competing load.
  """
  images = tf.random.uniform([BATCH_SIZE, *input_size, 3], -2.0, 2.0, seed=0)

  @tf.function
  def forward(x: tf.Tensor) -> tf.Tensor:
    outputs = model(x, training=False)
    # A scalar that depends on every output: nothing is pruned, little is copied.
    return tf.reduce_sum(outputs["class_outputs"]) + tf.reduce_sum(outputs["box_outputs"])

  for _ in range(warmup):
    forward(images).numpy()
  steps, matmuls = [], []
  for _ in range(iters):
    steps.append(common.timed_call(lambda: forward(images).numpy()))
    matmuls.append(matmul.timed())
  return steps, matmuls


def bench(name: str, model_config: config_lib.ModelConfig, precision: str, warmup: int,
          iters: int, gflops: Optional[float]) -> Result:
  tf_keras.mixed_precision.set_global_policy(precision)
  try:
    model = factory.build_model(model_config)
    if gflops is None:
      side = model_config.input_size
      gflops = common.graph_flops(lambda x: model(x, training=False),
                                  tf.TensorSpec([1, *side, 3], tf.float32)) / 1e9
    dtype = tf.bfloat16 if "bfloat16" in precision else tf.float32
    matmul = common.ChainedMatmul(INTERLEAVED_PEAK_SIZE, dtype)
    steps, matmuls = time_forward(model, model_config.input_size, warmup, iters, matmul)
    params = common.weight_count(model)
  finally:
    tf_keras.mixed_precision.set_global_policy("float32")
  result = Result(name, precision, tuple(model_config.input_size), params, gflops,
                  [w for w, _ in steps], [c for _, c in steps],
                  matmul.flops / min(w for w, _ in matmuls) / 1e9,
                  matmul.flops / min(c for _, c in matmuls) / 1e9)
  print(f"{name} {precision}: {result.best_images_per_s:.3f} img/s best, "
        f"{result.median_images_per_s:.3f} median ({gflops:.1f} GFLOPs/image; interleaved "
        f"matmul {result.interleaved_peak:.0f} GFLOP/s; per CPU second: model "
        f"{result.gflop_per_cpu_s:.0f}, matmul {result.interleaved_cpu_peak:.0f})", flush=True)
  return result


def peak_for(result: Result, peaks: Dict[str, float]) -> float:
  """The best matmul GFLOP/s of the run's dtype: start-of-run peak or interleaved samples."""
  return max(peaks["bfloat16" if "bfloat16" in result.precision else "float32"],
             result.interleaved_peak)


def utilization(result: Result, peaks: Dict[str, float], images_per_s: float) -> float:
  return result.gflops_per_image * images_per_s / peak_for(result, peaks)


def markdown(results: List[Result], peaks_by_size: Dict[str, Dict[int, float]],
             load_start: Sequence[float], load_end: Sequence[float], tiny_note: str,
             command: str, total_seconds: float) -> str:
  peaks = {dtype: max(v.values()) for dtype, v in peaks_by_size.items()}
  lines = [
      HEADING, "",
      common.run_header(command, total_seconds, load_start, load_end)
      + ", so absolute times are noisy and low. The robust figure is the CPU-time "
      "utilization (model vs matmul GFLOP per CPU second of this process); the wall-clock "
      "utilization swings with the other jobs (it can exceed 100% when a model step caught a "
      "quieter moment than every matmul sample).", "",
      f"Forward pass `model(images, training=False)` in a `tf.function`, random input, batch "
      f"{BATCH_SIZE}, no anchor decoding, no NMS; img/s from the best and the median of the "
      "timed steps after warm-up. GFLOPs/image: TF v1 profiler `float_operation` on the "
      "frozen forward graph at batch 1 (a multiply-add counts 2). Weights excludes BN moving "
      "statistics.", "",
      "Matmul peak at the start (GFLOP/s, `tf.matmul` n x n, 4 chained in a `tf.function`, "
      "best of 5): "
      + "; ".join(f"{dtype} " + ", ".join(f"n={n}: {g:.0f}" for n, g in sorted(v.items()))
                  for dtype, v in peaks_by_size.items())
      + " (an idle machine of this kind: float32 ~217, bfloat16 ~350-400). Because the load "
      f"changes from minute to minute, the same chained {INTERLEAVED_PEAK_SIZE}^2 matmul also "
      "runs once after every timed model step; \"Peak used\" is the best of the start-of-run "
      "peak and those interleaved samples, for the run's dtype (bfloat16 for mixed_bfloat16). "
      "Utilization = GFLOPs/image x img/s (best) / peak used. \"CPU-time utilization\" "
      "divides instead model GFLOP per CPU second of this process by the interleaved matmul's "
      "GFLOP per CPU second (best of each): CPU time hardly grows while other jobs hold the "
      "cores, so it is the least load-sensitive ratio (it still counts spin-waiting threads); "
      "matmul GFLOP per CPU second x 2 cores is the peak an idle machine would show, and "
      "\"img/s, cores ours\" = img/s per CPU second x 2 cores estimates the idle-machine "
      "speed.",
      "",
      "| Model | Precision | Input | Weights | GFLOPs/image | img/s best | img/s median "
      "| Achieved GFLOP/s | Peak used GFLOP/s | Utilization | Model / matmul GFLOP per CPU-s "
      "| CPU-time utilization | img/s, cores ours |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in results:
    achieved = r.gflops_per_image * r.best_images_per_s
    lines.append(
        f"| {r.model} | {r.precision} | {r.input_size[0]}x{r.input_size[1]} | "
        f"{r.params / 1e6:.2f} M | {r.gflops_per_image:.1f} | {r.best_images_per_s:.3f} | "
        f"{r.median_images_per_s:.3f} | {achieved:.0f} | {peak_for(r, peaks):.0f} | "
        f"{100 * utilization(r, peaks, r.best_images_per_s):.0f}% | "
        f"{r.gflop_per_cpu_s:.0f} / {r.interleaved_cpu_peak:.0f} | "
        f"{100 * r.cpu_utilization:.0f}% | {r.idle_images_per_s:.2f} |")
  r50 = next((r for r in results if r.model.startswith("R50") and r.precision == "float32"), None)
  if r50 is not None:
    lines += [
        "",
        f"FLOPs check: {r50.gflops_per_image:.1f} GFLOPs/image measured here vs "
        f"{MODEL_GARDEN_GFLOPS:.0f} for the TF Model Garden R50-FPN RetinaNet at 640x640 (same "
        f"profiler method): {100 * (r50.gflops_per_image / MODEL_GARDEN_GFLOPS - 1):+.1f}%. "
        "The architectures differ slightly: ours computes P6 from C5 (Model Garden from P5: "
        "+0.83 GFLOPs, +4.1 M weights) and has 80 classes (Model Garden 91: 11 x 9 fewer "
        "outputs of the final 3x3x256 class conv over 8,525 locations: -3.89 GFLOPs, -0.23 M "
        "weights); 194 + 0.83 - 3.89 = 190.9 GFLOPs predicted, and 34.09 + 4.13 - 0.23 = "
        "37.99 M weights (less Model Garden's ~0.02 M BN weights in the heads). Model Garden "
        "runs "
        f"{MODEL_GARDEN_IMAGES_PER_S} img/s float32 at batch 2 on an idle machine of this "
        "kind, ~225 GFLOP/s, i.e. about 100% of the float32 matmul peak; ours reaches "
        f"{100 * utilization(r50, peaks, r50.best_images_per_s):.0f}% of the peak used here "
        f"({100 * r50.cpu_utilization:.0f}% in CPU time, {r50.idle_images_per_s:.2f} img/s "
        "if the 2 cores were ours).",
    ]
  lines += ["", tiny_note] if tiny_note else []
  return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
  parser.add_argument("--iters", type=int, default=5, help="timed steps per model")
  parser.add_argument("--precisions", default=",".join(PRECISIONS))
  parser.add_argument("--peak_sizes", default=",".join(map(str, common.PEAK_SIZES)),
                      help="matrix sides of the matmul peak")
  parser.add_argument("--skip_r50", action="store_true", help="only the tiny config")
  parser.add_argument("--write_markdown", action="store_true",
                      help=f'replace the "{HEADING}" section of BENCHMARKS.md')
  args = parser.parse_args(argv)
  started = time.time()
  load_start = common.load_average()
  print(f"load average at start: {common.format_load(load_start)}", flush=True)
  precisions = [p for p in args.precisions.split(",") if p]
  for p in precisions:
    if p not in config_lib.PRECISIONS:
      raise SystemExit(f"--precisions: {p!r} is not one of {config_lib.PRECISIONS}")

  sizes = [int(n) for n in args.peak_sizes.split(",")]
  peaks_by_size = {"float32": common.matmul_peak(tf.float32, sizes)}
  if any("bfloat16" in p for p in precisions):
    peaks_by_size["bfloat16"] = common.matmul_peak(tf.bfloat16, sizes)
  print(f"matmul peak GFLOP/s: {peaks_by_size}", flush=True)

  models = []
  if not args.skip_r50:
    models.append(("R50-FPN RetinaNet", r50_config()))
  tiny_note = ""
  if os.path.exists(common.TINY_CONFIG):
    tiny = config_lib.load_config(common.TINY_CONFIG).model
    models.append((f"tiny sample ({common.resnet_label(tiny.backbone)}, {tiny.num_classes} "
                   f"classes, {tiny.num_anchors_per_location} anchors)", tiny))
  else:
    tiny_note = (f"The tiny sample config ({os.path.relpath(common.TINY_CONFIG, common.ROOT)}) "
                 "did not exist when this ran, so it is not in the table.")
    print(tiny_note, flush=True)

  results = []
  for name, model_config in models:
    gflops = None  # FLOPs do not depend on the precision: profile the float32 graph once.
    for precision in precisions:
      result = bench(name, model_config, precision, args.warmup, args.iters, gflops)
      gflops = result.gflops_per_image
      results.append(result)

  section = markdown(results, peaks_by_size, load_start, common.load_average(), tiny_note,
                     common.command_line("bench_model.py", argv), time.time() - started)
  common.publish(section, HEADING, args.write_markdown)
  return 0


if __name__ == "__main__":
  sys.exit(main())
