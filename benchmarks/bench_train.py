"""Training throughput of the RetinaNet trainer on this CPU, against the in-process matmul peak.

    .venv/bin/python benchmarks/bench_train.py [--write_markdown] [--only tiny|r50]
        [--no_xla] [--json_out results.json]
    .venv/bin/python benchmarks/bench_train.py --from_json results.json --write_markdown

Measures:
  * the matmul peak at the start: tf.matmul 4096^2, 4 chained in a
    tf.function, best of 5, float32 and bfloat16 (benchmarks/common.py);
  * forward FLOPs per image of each model (TF v1 profiler `float_operation` on
    the frozen forward graph, batch 1; multiply-add = 2); a training step is
    counted as 3x the forward FLOPs (forward + backward ~ 2x forward);
  * images/s of full training steps (`Trainer.run_steps(1)`: forward,
    focal + box loss, L2, gradients, all-reduce, SGD momentum update) for
    the tiny sample config (retinanet/configs/sample/tiny.json, batch 16,
    256x256) and ResNet-50 FPN at 640x640 (batch 2), float32 vs
    mixed_bfloat16, XLA (train.jit_compile) off and on.

Each case runs in its own process (fresh policy and memory). The input is
the real pipeline on generated sample records, one batch cached and
repeated, so the steps measure the trainer, not JPEG decoding. After every
timed step the chained 2048^2 matmul of the run's dtype runs once more: the
machine is shared, so "peak used" is the best of the start-of-run peak and
those interleaved samples, and utilization = 3 x forward GFLOPs x img/s / peak
used. CPU time per step (this process, all threads) is also recorded: model
GFLOP per CPU second / matmul GFLOP per CPU second is the load-insensitive ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

HEADING = "## Training"
PRECISIONS = ("float32", "mixed_bfloat16")
# (name, timed steps after one warm-up step, per-case time limit in seconds)
MODELS = {"tiny": (5, 1200), "r50": (2, 1800)}
# TF Model Garden R50-FPN float32 train step, 640², batch 2, idle machine (REFERENCE_FIGURES.md).
MODEL_GARDEN_TRAIN_IMAGES_PER_S = 0.29
INTERLEAVED_PEAK_SIZE = 2048
PEAK_SIZE = 4096


def model_config(name: str):
  from retinanet import config as config_lib  # pylint: disable=g-import-not-at-top
  if name == "tiny":
    return config_lib.load_config(common.TINY_CONFIG)
  # ResNet-50 FPN, P3-P7, 9 anchors, 4 x 256 head convs, 80 classes, 640x640, batch 2.
  return config_lib.apply_overrides(config_lib.ExperimentConfig(), ["train.global_batch_size=2"])


def run_case(model: str, precision: str, xla: bool, steps: int, files: str,
             count_flops: bool) -> dict:
  """One (model, precision, XLA) case in this process; returns its measurements."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top
  from retinanet import config as config_lib  # pylint: disable=g-import-not-at-top
  from retinanet.task import RetinaNetTask  # pylint: disable=g-import-not-at-top
  from retinanet.training import strategy as strategy_lib  # pylint: disable=g-import-not-at-top
  from retinanet.training import train_lib  # pylint: disable=g-import-not-at-top

  cfg = config_lib.apply_overrides(model_config(model), [
      f'train.mixed_precision="{precision}"', f"train.jit_compile={str(xla).lower()}",
      "input.deterministic=true"])
  strategy_lib.set_precision_policy(precision)
  base = RetinaNetTask(cfg).build_inputs(files, is_training=True)
  with tempfile.TemporaryDirectory() as model_dir:
    tr = train_lib.build_trainer(cfg, train_files=files, model_dir=model_dir,
                               strategy=tf.distribute.get_strategy(),
                               dataset_fn=lambda ctx: base(ctx).take(1).cache().repeat())
    batch = cfg.train.global_batch_size
    peak_dtype = tf.bfloat16 if precision == "mixed_bfloat16" else tf.float32
    matmul = common.ChainedMatmul(INTERLEAVED_PEAK_SIZE, peak_dtype)
    first_wall, first_cpu = common.timed_call(lambda: tr.run_steps(1))  # trace/compile + 1 step
    walls, cpus, peaks, cpu_peaks, losses = [], [], [], [], []
    for _ in range(steps):
      metrics = {}
      wall, cpu = common.timed_call(lambda: metrics.update(tr.run_steps(1)[1]))
      walls.append(wall)
      cpus.append(cpu)
      losses.append(metrics["total_loss"])
      m_wall, m_cpu = matmul.timed()
      peaks.append(matmul.flops / m_wall / 1e9)
      cpu_peaks.append(matmul.flops / m_cpu / 1e9)
    gflops = None
    if count_flops:
      tf_keras.mixed_precision.set_global_policy("float32")
      from retinanet import factory  # pylint: disable=g-import-not-at-top
      fwd_model = factory.build_model(cfg.model)
      h, w = cfg.model.input_size
      gflops = common.graph_flops(lambda x: fwd_model(x, training=False),
                                  tf.TensorSpec([1, h, w, 3], tf.float32)) / 1e9
  params = sum(int(v.shape.num_elements()) for v in tr.train_variables)
  return dict(model=model, precision=precision, xla=xla, batch=batch,
              input_size=list(cfg.model.input_size), trainable_params=params,
              first_seconds=first_wall, step_seconds=walls, step_cpu_seconds=cpus,
              interleaved_peak=max(peaks), interleaved_cpu_peak=max(cpu_peaks),
              losses=losses, forward_gflops=gflops)


def _child(args: argparse.Namespace) -> None:
  result = run_case(args.model, args.precision, args.xla, args.steps, args.files,
                    args.count_flops)
  print("RESULT" + json.dumps(result))


def _run_child(model: str, precision: str, xla: bool, steps: int, files: str,
               count_flops: bool, limit: int) -> dict:
  cmd = [sys.executable, os.path.abspath(__file__), "--_child", "--model", model,
         "--precision", precision, "--steps", str(steps), "--files", files]
  if xla:
    cmd.append("--xla")
  if count_flops:
    cmd.append("--count_flops")
  start = time.time()
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, cwd=common.ROOT)
  except subprocess.TimeoutExpired:
    return dict(model=model, precision=precision, xla=xla, error=f"over the {limit} s limit")
  if proc.returncode != 0 or "RESULT" not in proc.stdout:
    return dict(model=model, precision=precision, xla=xla,
                error=f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
  result = json.loads(proc.stdout.split("RESULT", 1)[1])
  result["process_seconds"] = time.time() - start
  return result


def model_label(model: str) -> str:
  m = model_config(model).model
  name = "tiny sample" if model == "tiny" else "RetinaNet"
  return (f"{name} ({common.resnet_label(m.backbone)}-FPN P{m.fpn.min_level}-P{m.fpn.max_level}, "
          f"{m.input_size[0]}², {m.num_classes} classes)")


def cpu_images_per_s(r: dict, cores: int = 2) -> float:
  """Images/s if `cores` free cores ran the step at its CPU time (best step)."""
  return cores * r["batch"] / min(r["step_cpu_seconds"])


def _row(r: dict, peaks: Dict[str, float], gflops: Dict[str, float]) -> str:
  name = model_label(r["model"])
  xla = "on" if r["xla"] else "off"
  if "error" in r:
    return f"| {name} | {r['precision']} | {xla} | - | - | - | - | - | - | - | - | {r['error']} |"
  batch = r["batch"]
  best = batch / min(r["step_seconds"])
  median = batch / statistics.median(r["step_seconds"])
  train_gflops = 3 * gflops[r["model"]]
  peak_key = "bfloat16" if r["precision"] == "mixed_bfloat16" else "float32"
  peak_used = max(peaks[peak_key], r["interleaved_peak"])
  achieved = train_gflops * best
  cpu_ratio = (train_gflops * batch / min(r["step_cpu_seconds"])) / r["interleaved_cpu_peak"]
  return (f"| {name} | {r['precision']} | {xla} | {batch} | {r['first_seconds']:.0f} | "
          f"{best:.3f} | {median:.3f} | {cpu_images_per_s(r):.3f} | {achieved:.0f} | "
          f"{peak_used:.0f} | {achieved / peak_used:.0%} | {cpu_ratio:.0%} |")


def _findings(results: List[dict]) -> List[str]:
  """Ratios between cases, from CPU time (the load-insensitive measure)."""
  ok = {(r["model"], r["precision"], r["xla"]): r for r in results if "error" not in r}
  lines = []
  for model in MODELS:
    f32, bf16 = ok.get((model, "float32", False)), ok.get((model, "mixed_bfloat16", False))
    if f32 and bf16:
      lines.append(f"- {model_label(model)}: mixed_bfloat16 trains "
                   f"{cpu_images_per_s(bf16) / cpu_images_per_s(f32):.2f}x as many images per "
                   "CPU second as float32.")
    for precision in PRECISIONS:
      off, on = ok.get((model, precision, False)), ok.get((model, precision, True))
      if off and on:
        lines.append(f"- {model_label(model)}, {precision}: XLA on gives "
                     f"{cpu_images_per_s(on) / cpu_images_per_s(off):.2f}x the images per CPU "
                     f"second of XLA off, after a {on['first_seconds']:.0f} s first step "
                     f"(vs {off['first_seconds']:.0f} s).")
  r50 = ok.get(("r50", "float32", False))
  if r50:
    lines.append(f"- R50-FPN float32 at 640², batch 2: {cpu_images_per_s(r50):.2f} img/s on 2 "
                 f"free cores by CPU time; the TF Model Garden R50-FPN train step runs "
                 f"{MODEL_GARDEN_TRAIN_IMAGES_PER_S} img/s on an idle machine of this kind "
                 "(/work/shared/REFERENCE_FIGURES.md; a gradient of a sum of head outputs, no "
                 "loss).")
  return lines


def markdown(results: List[dict], peaks: Dict[str, float], gflops: Dict[str, float],
             load_start, load_end, seconds: float) -> str:
  lines = [
      HEADING, "",
      common.run_header("python benchmarks/bench_train.py --write_markdown", seconds, load_start,
                        load_end) + ", so wall-clock figures are low and noisy; "
      "the CPU-time column is the least load-sensitive ratio.", "",
      "One training step = `Trainer.run_steps(1)`: forward, focal + Huber loss normalized by "
      "the global positive count, L2 over kernels, gradients, all-reduce (one replica), SGD "
      "momentum update; input = the real tf.data pipeline on sample-shapes records with one "
      "batch cached and repeated (training on this CPU is never input-bound, see Input "
      "pipeline). Each case runs in a fresh process: one warm-up step (tracing, XLA "
      "compilation: \"first step s\"), then timed steps "
      f"(tiny: {MODELS['tiny'][0]}, R50: {MODELS['r50'][0]}); img/s from the best and the "
      "median step.", "",
      f"Matmul peak at the start (tf.matmul {PEAK_SIZE}², 4 chained in a tf.function, best of "
      f"5): float32 {peaks['float32']:.0f} GFLOP/s, bfloat16 {peaks['bfloat16']:.0f} GFLOP/s "
      "(an idle machine of this kind: float32 ~217, bfloat16 ~350-400). The chained "
      f"{INTERLEAVED_PEAK_SIZE}² matmul of the run's dtype also runs after every timed step; "
      "\"peak used\" is the best of the start peak and those samples. Training FLOPs = 3 x "
      "forward FLOPs (TF v1 profiler `float_operation`, frozen forward graph, multiply-add = "
      "2): tiny " + (f"{gflops['tiny']:.1f}" if "tiny" in gflops else "-") +
      " GFLOPs/image forward, R50-FPN " + (f"{gflops['r50']:.1f}" if "r50" in gflops else "-") +
      " GFLOPs/image forward (the R50 config freezes stem + conv2_x, whose weight gradients "
      "are skipped, so 3x slightly over-counts there). Utilization (MFU) = 3 x forward GFLOPs "
      "x img/s (best) / peak used; CPU-time MFU = model GFLOP per CPU second / interleaved "
      "matmul GFLOP per CPU second.", "",
      "| Model | Precision | XLA | Batch | First step s | img/s best | img/s median | "
      "img/s, 2 free cores (CPU time) | Achieved GFLOP/s | Peak used GFLOP/s | MFU | "
      "CPU-time MFU |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  lines += [_row(r, peaks, gflops) for r in results]
  lines += ["", "\"img/s, 2 free cores\" = 2 x batch / CPU seconds of the best step (all "
            "threads of the process), the speed an idle 2-core machine would approach. "
            "Wall-clock MFU above 100% means the other jobs slowed the matmul samples more than "
            "the model step; compare cases by the CPU-time columns.", ""]
  lines += _findings(results)
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--write_markdown", action="store_true")
  parser.add_argument("--only", choices=sorted(MODELS), default=None)
  parser.add_argument("--no_xla", action="store_true", help="skip the XLA cases")
  parser.add_argument("--json_out", default="", help="also write the raw results here")
  parser.add_argument("--from_json", default="",
                      help="render the section from a --json_out file instead of measuring")
  parser.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--model", default="tiny")
  parser.add_argument("--precision", default="float32")
  parser.add_argument("--xla", action="store_true")
  parser.add_argument("--count_flops", action="store_true")
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--files", default="")
  args = parser.parse_args(argv)
  if args._child:  # pylint: disable=protected-access
    _child(args)
    return 0

  if args.from_json:
    with open(args.from_json) as f:
      saved = json.load(f)
    section = markdown(saved["results"], saved["peaks"], saved["gflops"], saved["load_start"],
                       saved["load_end"], saved["seconds"])
    common.publish(section, HEADING, args.write_markdown)
    return 0

  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  start, load_start = time.time(), common.load_average()
  peaks = {"float32": common.matmul_gflops(PEAK_SIZE, tf.float32),
           "bfloat16": common.matmul_gflops(PEAK_SIZE, tf.bfloat16)}
  print(f"matmul peak {PEAK_SIZE}^2: {peaks}", flush=True)
  models = [args.only] if args.only else list(MODELS)
  results, gflops = [], {}
  with tempfile.TemporaryDirectory() as work:
    files = common.write_records(work, image_size=(256, 256))
    for model in models:
      steps, limit = MODELS[model]
      for xla in ((False,) if args.no_xla else (False, True)):
        for precision in PRECISIONS:
          count = model not in gflops
          r = _run_child(model, precision, xla, steps, files, count, limit)
          if r.get("forward_gflops"):
            gflops[model] = r["forward_gflops"]
          results.append(r)
          print(json.dumps(r), flush=True)
  load_end, seconds = common.load_average(), time.time() - start
  if args.json_out:
    with open(args.json_out, "w") as f:
      json.dump(dict(peaks=peaks, gflops=gflops, results=results, load_start=load_start,
                     load_end=load_end, seconds=seconds), f, indent=1)
  common.publish(markdown(results, peaks, gflops, load_start, load_end, seconds), HEADING,
                 args.write_markdown)
  return 0


if __name__ == "__main__":
  sys.exit(main())
