"""The data stage at COCO scale: a COCO-train-sized annotation file through the pipeline.

    .venv/bin/python benchmarks/bench_coco_scale.py [--num_train 118287] [--num_val 5000]
        [--work_dir /tmp/coco_scale] [--skip_loop]

Generates (once, streamed to disk) a COCO-train-sized instances file: 118,287
images and ~860k annotations (7.3 per image, like train2017) with polygon
segmentations of 16-64 points, in 80 classes with COCO's sparse ids, whose image
records point at 64 real 640x480 noise JPEGs; plus a 5,000-image val file.
Then, in child processes whose whole process tree is sampled every 0.25 s
(peak PSS: shared pages counted once; CPU time of the tree):

  pipeline  `run_pipeline.py --to_stage=data` on them (the CocoExampleGen
            component on Beam's DirectRunner, the mode the CLI picks by size),
  loop      the same conversion as one plain loop in one process
            (`data.convert.convert_coco(..., in_process=True)`),

and reports wall time, images/s, peak memory and cores used, side by side,
with the machine named. Results go to BENCHMARKS.md "## Data stage at COCO scale".
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from typing import Dict, List

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

HEADING = "## Data stage at COCO scale"
NUM_JPEGS = 64
IMAGE_SIZE = (480, 640)


def _write_jpegs(image_dir: str) -> List[str]:
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  os.makedirs(image_dir, exist_ok=True)
  rng = np.random.RandomState(0)
  names = []
  for i in range(NUM_JPEGS):
    name = f"noise_{i:02d}.jpg"
    path = os.path.join(image_dir, name)
    if not os.path.exists(path):
      pixels = rng.randint(0, 256, IMAGE_SIZE + (3,)).astype(np.uint8)
      Image.fromarray(pixels).save(path, quality=90)
    names.append(name)
  return names


def write_instances(path: str, num_images: int, first_id: int, files: List[str],
                    seed: int) -> Dict[str, int]:
  """Streams a COCO instances file of `num_images` images to `path`; returns its counts."""
  rng = random.Random(seed)
  height, width = IMAGE_SIZE
  num_annotations = 0
  with open(path, "w") as f:
    f.write('{"info": {"description": "COCO-train-sized benchmark file"}, "licenses": [], ')
    f.write('"categories": ' + json.dumps([{"id": c, "name": f"class_{c}",
                                             "supercategory": "none"}
                                            for c in common.COCO_CATEGORY_IDS]))
    f.write(', "images": [')
    for i in range(num_images):
      f.write(("," if i else "") + json.dumps({
          "id": first_id + i, "file_name": files[i % len(files)], "height": height,
          "width": width, "license": 1, "date_captured": "2013-11-14 16:28:13"}))
    f.write('], "annotations": [')
    for i in range(num_images):
      count = min(50, int(rng.expovariate(1 / common.COCO_TRAIN_ANNOTATIONS_PER_IMAGE)))
      for _ in range(count):
        w, h = rng.uniform(4, width / 2), rng.uniform(4, height / 2)
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        points = rng.randrange(8, 33)
        polygon = [round(v, 2) for _ in range(points)
                   for v in (x + rng.uniform(0, w), y + rng.uniform(0, h))]
        f.write(("," if num_annotations else "") + json.dumps({
            "id": 900_000_000 + num_annotations, "image_id": first_id + i,
            "category_id": rng.choice(common.COCO_CATEGORY_IDS), "iscrowd": 0,
            "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
            "area": round(w * h * 0.6, 2), "segmentation": [polygon]}))
        num_annotations += 1
    f.write("]}\n")
  return {"images": num_images, "annotations": num_annotations,
          "bytes": os.path.getsize(path)}


def ensure_dataset(work_dir: str, num_train: int, num_val: int) -> Dict[str, Dict[str, int]]:
  image_dir = os.path.join(work_dir, "images")
  files = _write_jpegs(image_dir)
  counts = {}
  for split, n, first, seed in (("train", num_train, 1, 1), ("val", num_val, 10_000_000, 2)):
    path = os.path.join(work_dir, f"instances_{split}.json")
    marker = path + f".{n}.done"
    if not os.path.exists(marker):
      start = time.time()
      counts[split] = write_instances(path, n, first, files, seed)
      with open(marker, "w") as f:
        json.dump(counts[split], f)
      print(f"generated {path}: {counts[split]} in {time.time() - start:.0f} s", flush=True)
    with open(marker) as f:
      counts[split] = json.load(f)
  return counts


def measure(name: str, command: List[str]) -> Dict[str, float]:
  """Runs `command`; samples the tree's PSS and CPU time until it exits."""
  env = dict(os.environ, **common.ENV_DEFAULTS)
  start = time.perf_counter()
  proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env, cwd=common.ROOT)
  root = psutil.Process(proc.pid)
  peak, cpu = [0], {}
  done = threading.Event()

  def sample():
    while not done.is_set():
      total = 0
      for p in common.process_tree(root):
        try:
          total += p.memory_full_info().pss
          times = p.cpu_times()
          cpu[p.pid] = times.user + times.system  # every process of the tree is sampled
        except (psutil.NoSuchProcess, psutil.AccessDenied):
          pass
      peak[0] = max(peak[0], total)
      time.sleep(0.25)

  sampler = threading.Thread(target=sample, daemon=True)
  sampler.start()
  output = proc.communicate()[0]
  done.set()
  sampler.join()
  wall = time.perf_counter() - start
  if proc.returncode != 0:
    raise RuntimeError(f"{name} failed:\n{output[-4000:]}")
  result = {"wall": wall, "peak_gib": peak[0] / 2**30, "cpu_seconds": sum(cpu.values())}
  for line in output.splitlines():
    if line.startswith("RESULT "):
      result.update(json.loads(line[len("RESULT "):]))
    if "conversion finished in" in line:
      result["conversion_seconds"] = float(line.split("conversion finished in")[1].split()[0])
  print(f"  {name}: {result}", flush=True)
  return result


def _statistics_figures(output_dir: str) -> Dict[str, float]:
  """Boxes analyzed and coverage from the statistics stage's report under `output_dir`."""
  [path] = [os.path.join(r, "report.json") for r, _, fs in os.walk(output_dir)
            if "report.json" in fs and "BoxStatisticsGen" in r]
  with open(path) as f:
    report = json.load(f)
  boxes = sum(s["num_boxes"] + s["num_crowd"] for s in report["splits"].values())
  return {"boxes": boxes, "coverage": report["coverage"]}


def decode_check_cost(image_dir: str, repeats: int = 5) -> Dict[str, float]:
  """Milliseconds per image of the conversion's checks on the benchmark JPEGs (median of
  `repeats` passes): header only, the decode check, and a full decode."""
  import statistics  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from data import example_codec  # pylint: disable=g-import-not-at-top
  blobs = [open(os.path.join(image_dir, f), "rb").read() for f in sorted(os.listdir(image_dir))]
  headers = [example_codec.read_image_header(b) for b in blobs]
  steps = {
      "header": lambda b, h: example_codec.read_image_header(b),
      "decode check": lambda b, h: example_codec.check_decodes(b, h[1], h[2], fmt=h[0]),
      "full decode": lambda b, h: tf.io.decode_image(b, channels=3, expand_animations=False),
  }
  costs = {}
  for name, step in steps.items():
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      for blob, header in zip(blobs, headers):
        step(blob, header)
      times.append((time.perf_counter() - start) / len(blobs) * 1000)
    costs[name] = statistics.median(times)
  print(f"  decode check cost (ms per image): {costs}", flush=True)
  return costs


def loop_child(work_dir: str) -> None:
  """The conversion as one plain loop in this process (data.convert in_process)."""
  from data import convert  # pylint: disable=g-import-not-at-top
  out = os.path.join(work_dir, "loop_out")
  shutil.rmtree(out, ignore_errors=True)
  image_dir = os.path.join(work_dir, "images")
  start = time.perf_counter()
  convert.convert_coco({s: (os.path.join(work_dir, f"instances_{s}.json"), image_dir)
                        for s in ("train", "val")}, out, in_process=True)
  print("RESULT " + json.dumps({"conversion_seconds": time.perf_counter() - start}))
  shutil.rmtree(out, ignore_errors=True)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--num_train", type=int, default=118_287)
  parser.add_argument("--num_val", type=int, default=5_000)
  parser.add_argument("--work_dir", default="/tmp/coco_scale")
  parser.add_argument("--skip_loop", action="store_true")
  parser.add_argument("--skip_statistics", action="store_true")
  parser.add_argument("--statistics_config", default="coco/retinanet-r50-640-1x-b64-8gpu",
                      help="Config whose input size and anchors the statistics stage measures.")
  parser.add_argument("--_loop_child", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args._loop_child:  # pylint: disable=protected-access
    loop_child(args.work_dir)
    return 0
  counts = ensure_dataset(args.work_dir, args.num_train, args.num_val)
  images = counts["train"]["images"] + counts["val"]["images"]
  out = os.path.join(args.work_dir, "pipeline_out")
  shutil.rmtree(out, ignore_errors=True)
  image_dir = os.path.join(args.work_dir, "images")
  pipeline_command = [
      sys.executable, "run_pipeline.py", "--runner=local", f"--output_dir={out}",
      "--dataset=custom", f"--config={args.statistics_config}",
      f"--train_annotations={args.work_dir}/instances_train.json", f"--train_images={image_dir}",
      f"--val_annotations={args.work_dir}/instances_val.json", f"--val_images={image_dir}"]
  results = {"pipeline": measure("pipeline", pipeline_command + ["--to_stage=data"])}
  shard_bytes = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(out)
                    for f in fs if f.endswith(".gz"))
  statistics = None
  if not args.skip_statistics:  # the statistics stage alone, on the Examples just written
    statistics = measure("statistics", pipeline_command + ["--from_stage=statistics",
                                                           "--to_stage=statistics"])
    statistics.update(_statistics_figures(out))
  shutil.rmtree(out, ignore_errors=True)
  if not args.skip_loop:
    results["loop"] = measure("loop", [sys.executable, os.path.abspath(__file__),
                                       "--_loop_child", f"--work_dir={args.work_dir}"])
  costs = decode_check_cost(image_dir)
  rows = []
  for name, r in results.items():
    seconds = r.get("conversion_seconds", r["wall"])
    rows.append(f"| {name} | {r['wall']:.0f} s | {seconds:.0f} s | {images / seconds:.0f} | "
                f"{r['peak_gib']:.2f} GiB | {r['cpu_seconds'] / r['wall']:.2f} |")
  lines = [HEADING, "",
           f"Machine: {common.machine_description()}. `benchmarks/bench_coco_scale.py`: "
           f"{counts['train']['images']:,} + {counts['val']['images']:,} images, "
           f"{counts['train']['annotations']:,} + {counts['val']['annotations']:,} annotations "
           f"with polygons ({(counts['train']['bytes'] + counts['val']['bytes']) / 2**20:.0f} MB "
           f"of JSON), {NUM_JPEGS} noise JPEGs of 640x480; {shard_bytes / 2**30:.1f} GiB of "
           "shards written.", "",
           "| run | wall | conversion | images/s | peak memory (tree PSS) | cores used |",
           "|---|---|---|---|---|---|"] + rows + [
           "", "Per-image cost of the conversion's image checks on these 640x480 JPEGs "
           "(median of 5 passes, one core): header and end marker "
           f"{costs['header']:.2f} ms, the decode check (`check_decodes`: JPEG entropy-decoded "
           f"at 1/8 scale) {costs['decode check']:.2f} ms, a full decode "
           f"{costs['full decode']:.2f} ms."]
  if statistics is not None:
    lines += ["", f"The statistics stage (`BoxStatisticsGen`, tensorflow-transform analyzers on "
              f"Beam's DirectRunner, config `{args.statistics_config}`) alone on those Examples, "
              "`--from_stage=statistics --to_stage=statistics`:", "",
              "| run | wall | images/s | boxes/s | peak memory (tree PSS) | cores used |",
              "|---|---|---|---|---|---|",
              f"| statistics | {statistics['wall']:.0f} s | {images / statistics['wall']:.0f} | "
              f"{statistics['boxes'] / statistics['wall']:.0f} | {statistics['peak_gib']:.2f} GiB "
              f"| {statistics['cpu_seconds'] / statistics['wall']:.2f} |", "",
              f"Wall time includes starting the process and TFX (~10 s). Train-box coverage "
              f"of the config's anchors: {statistics['coverage']:.1%} (these boxes are random "
              "in size and shape)."]
  common.publish("\n".join(lines), HEADING, write_markdown=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
