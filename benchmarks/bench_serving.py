"""Latency of the exported SavedModel on this CPU, batch 1 and 8.

    .venv/bin/python benchmarks/bench_serving.py [--warmup 2] [--runs 20] [--warmup_r50 1]
        [--runs_r50 4] [--skip_r50] [--write_markdown]

For the tiny sample config (retinanet/configs/sample/tiny.json) and RetinaNet
ResNet-50 FPN 640x640 (80 classes), both with random weights and combined NMS:
export with `retinanet.serving.export.export_saved_model`, load it with
`tf.saved_model.load` (as a client would), then time whole signature calls,
preprocessing and NMS included:
  * `serve_images`: uint8 [B, 480, 640, 3] (a typical COCO image size);
  * `serve_encoded`: B JPEG strings of 480x640 images (decode inside).
p50 / p90 are over the timed runs after warm-up; images/s = B / p50. The
"forward only" column is `model(images, training=False)` in a tf.function on
an already preprocessed batch: the rest of the latency is pre/postprocessing.

Random weights give scores near the 0.01 prior, below the usual 0.05
threshold, which would leave NMS with nothing to do. The export therefore
uses score_threshold 0: every pre-NMS candidate (pre_nms_top_k per level)
enters NMS, an upper bound on postprocessing cost for these settings.
Writes the "## Serving" section of BENCHMARKS.md with --write_markdown.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import os
import sys
import tempfile
import time
from typing import List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from retinanet import config as config_lib  # noqa: E402
from retinanet import factory  # noqa: E402
from retinanet.serving import export  # noqa: E402

HEADING = "## Serving"
IMAGE_SIZE = common.SERVING_IMAGE_SIZE
BATCH_SIZES = common.SERVING_BATCH_SIZES
SIGNATURES = (export.SERVE_IMAGES, export.SERVE_ENCODED)


@dataclasses.dataclass
class Row:
  model: str
  input_size: Sequence[int]
  signature: str
  batch: int
  seconds: List[float]
  cpu_seconds: List[float]
  forward_seconds: List[float]
  forward_cpu_seconds: List[float]

  def percentile(self, q: float, values: Optional[List[float]] = None) -> float:
    return float(np.percentile(values if values is not None else self.seconds, q))

  @property
  def images_per_s(self) -> float:
    return self.batch / self.percentile(50)


def jpeg_bytes(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="JPEG", quality=90)
  return buffer.getvalue()


def bench_model(name: str, config: config_lib.ExperimentConfig, warmup: int,
                runs: int) -> List[Row]:
  """Exports `config`'s model with random weights and times each signature and batch size."""
  postprocess = dataclasses.replace(config.postprocess, nms_mode="combined", score_threshold=0.0)
  label_map = common.placeholder_label_map(config.model.num_classes)
  model = factory.build_model(config.model)
  input_size = tuple(config.model.input_size)

  @tf.function
  def forward(images: tf.Tensor):
    return model(images, training=False)

  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    start = time.perf_counter()
    export_dir = export.export_saved_model(
        model, model_config=config.model, input_config=config.input,
        postprocess_config=postprocess, label_map=label_map,
        export_dir=os.path.join(tmp, "export"))
    export_seconds = time.perf_counter() - start
    start = time.perf_counter()
    loaded = tf.saved_model.load(export_dir)
    load_seconds = time.perf_counter() - start
    print(f"{name}: export {export_seconds:.1f} s, load {load_seconds:.1f} s", flush=True)
    for batch in BATCH_SIZES:
      images = common.sample_images(batch, IMAGE_SIZE)
      normalized = tf.random.stateless_normal([batch, *input_size, 3], seed=[0, batch])
      inputs = {
          export.SERVE_IMAGES: {export.IMAGES_KEY: tf.constant(images)},
          export.SERVE_ENCODED: {export.ENCODED_IMAGES_KEY: tf.constant(
              [jpeg_bytes(im) for im in images])},
      }
      calls = [lambda: forward(normalized)["class_outputs"].numpy()]
      for signature in SIGNATURES:
        calls.append(lambda fn=loaded.signatures[signature], kwargs=inputs[signature]:
                     fn(**kwargs)["boxes"].numpy())
      (forward_wall, forward_cpu), *signature_seconds = common.time_round_robin(calls, warmup, runs)
      for signature, (wall, cpu) in zip(SIGNATURES, signature_seconds):
        row = Row(name, input_size, signature, batch, wall, cpu, forward_wall, forward_cpu)
        rows.append(row)
        print(f"  {signature} batch {batch}: p50 {row.percentile(50) * 1e3:.0f} ms, "
              f"p90 {row.percentile(90) * 1e3:.0f} ms, {row.images_per_s:.2f} images/s "
              f"(forward only p50 {row.percentile(50, forward_wall) * 1e3:.0f} ms; CPU p50 "
              f"{row.percentile(50, cpu) * 1e3:.0f} vs "
              f"{row.percentile(50, forward_cpu) * 1e3:.0f} ms)",
              flush=True)
  return rows


def markdown(rows: List[Row], runs_by_model: dict, load_start: Sequence[float],
             load_end: Sequence[float], seconds: float) -> str:
  lines = [
      HEADING, "",
      common.run_header("python benchmarks/bench_serving.py --write_markdown", seconds,
                        load_start, load_end) + ", so absolute times are noisy and high.", "",
      "Exported with `retinanet.serving.export.export_saved_model` (random weights, combined "
      "NMS, pre_nms_top_k per level and max_detections as in each config, score_threshold 0 so "
      "every pre-NMS candidate enters NMS: the worst case of these settings), loaded with "
      "`tf.saved_model.load`, float32. One call = preprocessing (resize to fit, normalize, pad; "
      "JPEG decode for `serve_encoded`) + model + NMS + boxes mapped to original pixels. Input: "
      f"{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} images (uint8 arrays, or JPEG quality 90). Latency "
      "percentiles over the timed runs after the warm-up calls; images/s = batch / p50. "
      "Forward only: `model(images, training=False)` in a tf.function on a preprocessed batch "
      "of the same size. The three calls of a batch size run interleaved (forward, "
      "`serve_images`, `serve_encoded`, forward, ...) so they share the machine's load. CPU ms: "
      "CPU time of this process per call (all threads), far less sensitive to other jobs than "
      "wall time; pre/postprocessing share = 1 - forward CPU p50 / signature CPU p50.", "",
      "| Model | Input | Signature | Batch | Warm-up + timed runs | p50 ms | p90 ms | images/s | "
      "Forward only p50 ms | CPU ms p50 | Forward only CPU ms p50 | Pre/postprocessing share |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    forward = r.percentile(50, r.forward_seconds)
    cpu, forward_cpu = r.percentile(50, r.cpu_seconds), r.percentile(50, r.forward_cpu_seconds)
    lines.append(
        f"| {r.model} | {r.input_size[0]}x{r.input_size[1]} | `{r.signature}` | {r.batch} | "
        f"{' + '.join(map(str, runs_by_model[r.model]))} | {r.percentile(50) * 1e3:.0f} | "
        f"{r.percentile(90) * 1e3:.0f} | {r.images_per_s:.2f} | {forward * 1e3:.0f} | "
        f"{cpu * 1e3:.0f} | {forward_cpu * 1e3:.0f} | {max(0.0, 1 - forward_cpu / cpu):.0%} |")
  return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--warmup", type=int, default=2, help="untimed calls per measurement")
  parser.add_argument("--runs", type=int, default=20, help="timed calls, tiny model")
  parser.add_argument("--runs_r50", type=int, default=4, help="timed calls, ResNet-50")
  parser.add_argument("--warmup_r50", type=int, default=1, help="untimed calls, ResNet-50")
  parser.add_argument("--skip_r50", action="store_true", help="only the tiny config")
  parser.add_argument("--write_markdown", action="store_true",
                      help=f"replace the {HEADING!r} section of BENCHMARKS.md")
  args = parser.parse_args(argv)
  start, load_start = time.perf_counter(), common.load_average()
  models = [("tiny sample (R18, 5 classes)", config_lib.load_config(common.TINY_CONFIG),
             args.warmup, args.runs)]
  if not args.skip_r50:
    models.append(("R50-FPN RetinaNet (80 classes)", config_lib.ExperimentConfig(),
                   args.warmup_r50, args.runs_r50))
  rows, runs_by_model = [], {}
  for name, config, warmup, runs in models:
    runs_by_model[name] = (warmup, runs)
    rows.extend(bench_model(name, config, warmup, runs))
  section = markdown(rows, runs_by_model, load_start, common.load_average(),
                     time.perf_counter() - start)
  common.publish(section, HEADING, args.write_markdown)
  return 0


if __name__ == "__main__":
  sys.exit(main())
