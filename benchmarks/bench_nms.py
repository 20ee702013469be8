"""The five NMS modes at 80 classes, before and after the vectorized per-class NMS, one run.

    .venv/bin/python benchmarks/bench_nms.py [--before_rev 1d5a012] [--runs 20] [--write_markdown]

`retinanet.ops.postprocess.generate_detections` in a tf.function on random outputs of
RetinaNet R50-FPN 640x640 (76,725 anchors x 80 classes; logits N(-4.5, 1.5): about 15% of
the (anchor, class) pairs pass score_threshold 0.05, so all 1,000 pre-NMS candidates are
real and spread over every class), pre_nms_top_k 1000 over all anchors, IoU 0.5, soft sigma 0.5,
100 detections (100 per class). "Before" is postprocess.py as of --before_rev (one NMS
op per class through tf.map_fn), loaded from git beside the current module, so both run
in this process on the same inputs, interleaved call by call. Median wall ms of --runs
calls after 3 warm-up calls; detections are compared (count, classes, boxes, scores).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from retinanet.ops import anchors as anchors_lib  # noqa: E402
from retinanet.ops import postprocess  # noqa: E402

HEADING = "## NMS modes at 80 classes"
BEFORE_REV = "1d5a012"
NUM_CLASSES = 80
IMAGE = (640, 640)
SETTINGS = dict(pre_nms_top_k=1000, score_threshold=0.05, iou_threshold=0.5, soft_nms_sigma=0.5,
                max_detections=100, max_detections_per_class=100)


def load_revision(rev: str):
  """retinanet/ops/postprocess.py as of git revision `rev`, as a module."""
  source = subprocess.run(["git", "show", f"{rev}:retinanet/ops/postprocess.py"], cwd=common.ROOT,
                          capture_output=True, text=True, check=True).stdout
  path = os.path.join(tempfile.mkdtemp(), f"postprocess_{rev}.py")
  with open(path, "w") as f:
    f.write(source)
  spec = importlib.util.spec_from_file_location(f"postprocess_{rev}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def inputs(batch: int, anchors: tf.Tensor, seed: int = 0):
  rng = np.random.RandomState(seed)
  n = int(anchors.shape[0])
  logits = rng.normal(-4.5, 1.5, (batch, n, NUM_CLASSES)).astype(np.float32)
  deltas = rng.normal(0, 0.3, (batch, n, 4)).astype(np.float32)
  return tf.constant(logits), tf.constant(deltas)


def compare(a, b) -> str:
  a = {k: v.numpy() for k, v in a.items()}
  b = {k: v.numpy() for k, v in b.items()}
  if not np.array_equal(a["valid_detections"], b["valid_detections"]):
    return f"counts differ: {a['valid_detections']} vs {b['valid_detections']}"
  diff_scores = float(np.abs(a["scores"] - b["scores"]).max())
  same_classes = bool(np.array_equal(a["classes"], b["classes"]))
  diff_boxes = float(np.abs(a["boxes"] - b["boxes"]).max())
  return (f"same counts, {'same' if same_classes else 'DIFFERENT'} classes, max |score diff| "
          f"{diff_scores:.1e}, max |box diff| {diff_boxes:.1e} px")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--before_rev", default=BEFORE_REV)
  parser.add_argument("--runs", type=int, default=20)
  parser.add_argument("--write_markdown", action="store_true")
  args = parser.parse_args(argv)
  machine, load = common.machine_description(), common.load_average()
  before = load_revision(args.before_rev)
  layout = anchors_lib.Anchors(IMAGE, 3, 7, 4.0, 3, (0.5, 1.0, 2.0))
  anchors = layout.boxes()
  rows, notes = [], []
  for batch in (1, 8):
    logits, deltas = inputs(batch, anchors)
    passing = float(tf.reduce_mean(tf.reduce_sum(tf.cast(tf.sigmoid(logits) > 0.05, tf.float32),
                                                 axis=[1, 2])))
    for mode in postprocess.NMS_MODES:
      fns = {name: tf.function(lambda l, d, m=module: m.generate_detections(
          l, d, anchors, IMAGE, nms_mode=mode, **SETTINGS))
             for name, module in (("before", before), ("after", postprocess))}
      outputs = {name: fn(logits, deltas) for name, fn in fns.items()}
      for _ in range(2):
        for fn in fns.values():
          fn(logits, deltas)
      times = {name: [] for name in fns}
      for _ in range(args.runs):
        for name, fn in fns.items():
          start = time.perf_counter()
          fn(logits, deltas)["scores"].numpy()
          times[name].append((time.perf_counter() - start) * 1000)
      ms = {name: statistics.median(t) for name, t in times.items()}
      rows.append((batch, mode, ms["before"], ms["after"], compare(outputs["before"],
                                                                   outputs["after"])))
      print(f"batch {batch} {mode}: before {ms['before']:.1f} ms, after {ms['after']:.1f} ms; "
            f"{rows[-1][-1]}", flush=True)
    notes.append(f"batch {batch}: {passing:.0f} (anchor, class) pairs above 0.05 per image")
  combined = {b: after for b, mode, _, after, _ in rows if mode == "combined"}
  table = "\n".join(
      f"| {b} | {mode} | {before_ms:.1f} | {after_ms:.1f} | {after_ms / combined[b]:.2f}x | {same} |"
      for b, mode, before_ms, after_ms, same in rows)
  section = f"""{HEADING}

`benchmarks/bench_nms.py`, one run on {machine}; load average at the start
{common.format_load(load)}. `generate_detections` in a tf.function on random R50-FPN 640x640
outputs (76,725 anchors x 80 classes; {'; '.join(notes)}), pre_nms_top_k 1000, IoU 0.5,
soft sigma 0.5, 100 detections and 100 per class. "Before" = postprocess.py of commit
{args.before_rev} (one NMS op per class under tf.map_fn), "after" = the vectorized per-class loop;
both in this process on the same inputs, interleaved; median of {args.runs} calls.

| batch | mode | before (ms) | after (ms) | after / combined | detections before vs after |
|---|---|---|---|---|---|
{table}
"""
  common.publish(section, HEADING, args.write_markdown)
  return 0


if __name__ == "__main__":
  sys.exit(main())
