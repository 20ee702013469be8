"""COCO evaluation backends side by side: faster-coco-eval against pycocotools.

    .venv/bin/python benchmarks/bench_cocoeval.py [--num_images 5000] [--write_markdown]

Generates COCO-like ground truth and results in memory (seeded): `num_images`
images of COCO's size range, 80 classes with COCO's sparse ids, ~7.3 ground-truth
boxes per image (train2017's mean; 1% crowd regions, objects from 2 px to half the
image), and exactly 100 detections per image (the standard maxDets): jittered
copies of most objects plus spurious boxes of random classes. Then
`coco_metrics.evaluate_coco` runs with each backend in this process (loading the
results, evaluate, accumulate, summarize), timed by wall clock and by this
process's CPU time, and the 12 numbers and per-class AP are compared.
Writes "## COCO evaluation backends" in BENCHMARKS.md with --write_markdown.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any, Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

import numpy as np  # noqa: E402

from retinanet.evaluation import coco_metrics  # noqa: E402

HEADING = "## COCO evaluation backends"
DETECTIONS_PER_IMAGE = 100


def coco_like(num_images: int, seed: int = 0) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
  """(ground-truth dict, results list) as described in the module docstring."""
  rng = np.random.default_rng(seed)
  images, annotations, detections = [], [], []
  for image_id in range(1, num_images + 1):
    h, w = int(rng.integers(240, 640)), int(rng.integers(320, 640))
    images.append({"id": image_id, "height": h, "width": w})
    dets = []
    for _ in range(int(rng.poisson(common.COCO_TRAIN_ANNOTATIONS_PER_IMAGE))):
      bw, bh = np.exp(rng.uniform(np.log(2), np.log(w / 2))), np.exp(
          rng.uniform(np.log(2), np.log(h / 2)))
      x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
      cat = int(rng.choice(common.COCO_CATEGORY_IDS))
      annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                          "bbox": [x, y, bw, bh], "area": bw * bh,
                          "iscrowd": int(rng.uniform() < 0.01)})
      if rng.uniform() < 0.7:
        j = rng.normal(0, 0.1, 4) * [bw, bh, bw, bh]
        dets.append({"image_id": image_id, "category_id": cat, "score": float(rng.uniform()),
                     "bbox": [x + j[0], y + j[1], max(bw + j[2], 1.0), max(bh + j[3], 1.0)]})
    while len(dets) < DETECTIONS_PER_IMAGE:
      bw, bh = rng.uniform(4, w / 2), rng.uniform(4, h / 2)
      dets.append({"image_id": image_id, "category_id": int(rng.choice(common.COCO_CATEGORY_IDS)),
                   "score": float(rng.uniform() * 0.5),
                   "bbox": [rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh]})
    detections.extend(dets[:DETECTIONS_PER_IMAGE])
  categories = [{"id": c, "name": f"category_{c}"} for c in common.COCO_CATEGORY_IDS]
  return {"images": images, "annotations": annotations, "categories": categories}, detections


def run(backend: str, dataset, detections) -> Tuple[Dict[str, Any], float, float]:
  wall, cpu = time.perf_counter(), time.process_time()
  result = coco_metrics.evaluate_coco(dataset, detections, backend=backend)
  return result, time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--num_images", type=int, default=5000)
  parser.add_argument("--write_markdown", action="store_true")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.WARNING)
  load_start = common.load_average()
  start = time.perf_counter()
  dataset, detections = coco_like(args.num_images)
  print(f"generated {len(dataset['images'])} images, {len(dataset['annotations'])} annotations, "
        f"{len(detections)} detections in {time.perf_counter() - start:.1f} s", flush=True)
  runs = {}
  for backend in ("faster_coco_eval", "pycocotools"):
    runs[backend] = run(backend, dataset, detections)
    print(f"  {backend}: wall {runs[backend][1]:.1f} s, CPU {runs[backend][2]:.1f} s", flush=True)
  fast, reference = runs["faster_coco_eval"][0], runs["pycocotools"][0]
  stat_diff = max(abs(fast[n] - reference[n]) for n in coco_metrics.COCO_METRIC_NAMES)
  class_diff = max(abs((a["AP"] or 0.0) - (b["AP"] or 0.0))
                   for a, b in zip(fast["per_class"], reference["per_class"]))
  undefined_same = all((a["AP"] is None) == (b["AP"] is None)
                       for a, b in zip(fast["per_class"], reference["per_class"]))
  rows = [f"| {name} | {wall:.1f} s | {cpu:.1f} s | {runs['pycocotools'][1] / wall:.1f}x |"
          for name, (_, wall, cpu) in runs.items()]
  lines = [HEADING, "",
           f"Machine: {common.machine_description()}; load average at the start "
           f"{common.format_load(load_start)}, at the end {common.format_load(common.load_average())}. "
           f"Command: `python benchmarks/bench_cocoeval.py --num_images {args.num_images} "
           "--write_markdown`. COCO-like data generated in memory: "
           f"{len(dataset['images']):,} images, 80 classes with COCO's ids, "
           f"{len(dataset['annotations']):,} ground-truth boxes (1% crowd), "
           f"{len(detections):,} detections ({DETECTIONS_PER_IMAGE} per image). Each backend runs "
           "`coco_metrics.evaluate_coco` (load results, evaluate, accumulate, summarize) in "
           "the same process, one after the other.", "",
           "| backend | wall | CPU time | speed-up (wall) vs pycocotools |", "|---|---|---|---|",
           *rows, "",
           f"Largest difference over the 12 numbers: {stat_diff:.1e}; over the 80 per-class APs: "
           f"{class_diff:.1e}; the same classes undefined: {'yes' if undefined_same else 'NO'}. "
           f"AP of this data: {reference['AP']:.4f}."]
  common.publish("\n".join(lines), HEADING, args.write_markdown)
  return 0


if __name__ == "__main__":
  sys.exit(main())
