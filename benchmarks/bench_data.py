"""Benchmark of the data stage (COCO -> TFRecords), side by side with its limits.

    .venv/bin/python benchmarks/bench_data.py [--sizes 1000,2000,4000] [--write_markdown]

Generates (once, reused) 4,000 640x480 shapes images into
/tmp/data_bench/shapes4000 and, for each size, converts the first N images:

  raw read     one process reading every image file's bytes (nothing else):
               the limit for a stage that does not decode/re-encode;
  python loop  one process doing the same work as the Beam stage with the same
               library functions (validate JSON, shard by image id, sort, read,
               header, Example, gzip TFRecord) - its shards are checked to be
               byte-identical to Beam's;
  beam ...     data.convert.convert_coco on the FnApiRunner (the DirectRunner's
               engine): in_memory (1 worker), multi_threading (2 workers),
               multi_processing (2 worker processes).

Every measurement runs in a fresh subprocess: "time" is the conversion itself
(after imports), "wall" the whole subprocess. Peak memory is the sampled peak of
the summed PSS of the subprocess and all its descendants (psutil, every 0.1 s;
PSS counts shared pages once), and the largest single-process max RSS
(getrusage). Files are in the page cache
(the raw read runs first), so "raw read" is a memory-speed upper bound.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

HEADING = "## Data stage"
DATA_DIR = "/tmp/data_bench"
DATASET = os.path.join(DATA_DIR, "shapes4000")
NUM_IMAGES = 4000
IMAGE_SIZE = (480, 640)
BEAM_MODES = (("in_memory", 1), ("multi_threading", 2), ("multi_processing", 2))
LOOP = "python loop (1 process)"
COPY = "raw read + write (copy)"


def ensure_dataset() -> None:
  """Generates the 4,000-image dataset once (several minutes)."""
  marker = os.path.join(DATASET, "annotations", "instances_train.json")
  if os.path.exists(marker):
    return
  from data import sample_data  # pylint: disable=g-import-not-at-top
  print(f"generating {NUM_IMAGES} {IMAGE_SIZE[1]}x{IMAGE_SIZE[0]} images into {DATASET} ...",
        flush=True)
  sample_data.generate_sample_dataset(DATASET, NUM_IMAGES, 0, IMAGE_SIZE, seed=1)


def subset_json(n: int) -> str:
  """Annotations of the first n images (same image directory)."""
  path = os.path.join(DATA_DIR, f"instances_train_{n}.json")
  if not os.path.exists(path):
    with open(os.path.join(DATASET, "annotations", "instances_train.json")) as f:
      data = json.load(f)
    data["images"] = data["images"][:n]
    keep = {im["id"] for im in data["images"]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    with open(path, "w") as f:
      json.dump(data, f)
  return path


# ---------------------------------------------------------------- children


def child_raw(ann: str, image_dir: str) -> Dict[str, float]:
  with open(ann) as f:
    names = [im["file_name"] for im in json.load(f)["images"]]
  start = time.perf_counter()
  total = 0
  for name in names:
    with open(os.path.join(image_dir, name), "rb") as f:
      total += len(f.read())
  return {"seconds": time.perf_counter() - start, "bytes": total}


def child_copy(ann: str, image_dir: str, out: str) -> Dict[str, float]:
  """Read every file and append its bytes to one output file: the floor for
  any stage that must read and write the bytes."""
  with open(ann) as f:
    names = [im["file_name"] for im in json.load(f)["images"]]
  os.makedirs(out, exist_ok=True)
  start = time.perf_counter()
  with open(os.path.join(out, "all.bin"), "wb") as dst:
    for name in names:
      with open(os.path.join(image_dir, name), "rb") as f:
        dst.write(f.read())
  return {"seconds": time.perf_counter() - start}


def child_loop(ann: str, image_dir: str, out: str, num_shards: int) -> Dict[str, float]:
  """The Beam stage's work in one plain loop (same library calls, same output)."""
  import collections  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from data import convert  # pylint: disable=g-import-not-at-top
  from data import example_codec as codec  # pylint: disable=g-import-not-at-top
  from retinanet import coco, fileio  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  data = coco.read_coco_json(ann)
  label_map = coco.label_map_from_coco(data)
  by_image = collections.defaultdict(list)
  for a in data["annotations"]:
    by_image[a["image_id"]].append(a)
  shards = collections.defaultdict(list)
  for image in data["images"]:
    shards[convert.shard_of(image["id"], num_shards)].append(image)
  os.makedirs(out, exist_ok=True)
  options = tf.io.TFRecordOptions(compression_type="GZIP", compression_level=convert.GZIP_LEVEL)
  written = 0
  for shard in range(num_shards):
    path = os.path.join(out, convert.shard_name(shard, num_shards))
    with tf.io.TFRecordWriter(path, options) as writer:
      for image in sorted(shards[shard], key=lambda im: im["id"]):
        raw = fileio.read_bytes(os.path.join(image_dir, image["file_name"]))
        example, _ = codec.build_example(raw, image, by_image[image["id"]], label_map)
        writer.write(example.SerializeToString(deterministic=True))
        written += 1
  return {"seconds": time.perf_counter() - start, "written": written}


def child_beam(ann: str, image_dir: str, out: str, num_shards: int, mode: str,
               workers: int) -> Dict[str, float]:
  from data import convert  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  result = convert.convert_coco(
      {"train": (ann, image_dir)}, out, num_shards=num_shards,
      beam_pipeline_args=[f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"])
  return {"seconds": time.perf_counter() - start,
          "written": result.stats["splits"]["train"]["images_written"]}


def child_estimate(ann: str, image_dir: str) -> Dict[str, float]:
  from data import convert  # pylint: disable=g-import-not-at-top
  with open(ann) as f:
    images = json.load(f)["images"]
  return {"num_shards": convert.estimate_num_shards(images, image_dir)}


def child_main(argv: Sequence[str]) -> None:
  kind, ann, image_dir, out, num_shards, mode, workers = argv
  if kind == "estimate":
    result = child_estimate(ann, image_dir)
  elif kind == "gzip":
    result = {"rows": gzip_levels()}
  elif kind == "raw":
    result = child_raw(ann, image_dir)
  elif kind == "copy":
    result = child_copy(ann, image_dir, out)
  elif kind == "loop":
    result = child_loop(ann, image_dir, out, int(num_shards))
  else:
    result = child_beam(ann, image_dir, out, int(num_shards), mode, int(workers))
  rusage = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
  result["max_rss_single_mb"] = rusage / 1024
  print("RESULT " + json.dumps(result), flush=True)


# ---------------------------------------------------------------- parent


@dataclasses.dataclass
class Measurement:
  name: str
  images: int
  num_shards: int
  seconds: float
  wall: float
  peak_tree_mb: float
  max_rss_single_mb: float
  out_dir: Optional[str]
  all_seconds: Tuple[float, ...] = ()

  @property
  def images_per_s(self) -> float:
    return self.images / self.seconds


def _tree_memory(proc: psutil.Process) -> int:
  """Summed PSS of a process tree (shared pages counted once, unlike RSS: a
  fork of a 600 MB process would otherwise count twice)."""
  total = 0
  for p in common.process_tree(proc):
    try:
      total += p.memory_full_info().pss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
      pass
  return total


def _child_env() -> Dict[str, str]:
  """The children's environment: a bytecode cache under /tmp.

  This machine sets PYTHONDONTWRITEBYTECODE=1, so every process (and every
  Beam worker process) would recompile Beam's and TF's sources (~6-10 s of
  CPU); an installed package or container image has .pyc files.
  """
  env = dict(os.environ)
  env.pop("PYTHONDONTWRITEBYTECODE", None)
  env["PYTHONPYCACHEPREFIX"] = os.path.join(DATA_DIR, "pycache")
  return env


def run_child(kind: str, n: int, out: str = "-", num_shards: int = 0, mode: str = "",
              workers: int = 0) -> subprocess.Popen:
  cmd = [sys.executable, os.path.abspath(__file__), "--_child", kind, subset_json(n),
         os.path.join(DATASET, "images", "train"), out, str(num_shards), mode, str(workers)]
  return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=_child_env())


def child_result(proc: subprocess.Popen, name: str) -> Dict[str, Any]:
  output = proc.communicate()[0]
  lines = [l for l in output.splitlines() if l.startswith("RESULT ")]
  if proc.returncode != 0 or not lines:
    raise RuntimeError(f"{name} failed (exit {proc.returncode}):\n{output[-3000:]}")
  return json.loads(lines[-1][len("RESULT "):])


def measure(name: str, kind: str, n: int, num_shards: int, mode: str = "", workers: int = 0
            ) -> Measurement:
  out = os.path.join(DATA_DIR, "out", f"{re.sub('[^a-z_]', '', name.replace(' ', '_'))}_{n}")
  subprocess.run(["rm", "-rf", out], check=True)
  start = time.perf_counter()
  proc = run_child(kind, n, out, num_shards, mode, workers)
  ps = psutil.Process(proc.pid)
  peak = [0]
  done = threading.Event()

  def sample():
    while not done.is_set():
      peak[0] = max(peak[0], _tree_memory(ps))
      time.sleep(0.1)
  sampler = threading.Thread(target=sample, daemon=True)
  sampler.start()
  try:
    result = child_result(proc, name)
  finally:
    done.set()
    sampler.join()
  wall = time.perf_counter() - start
  m = Measurement(name, n, num_shards, result["seconds"], wall, peak[0] / 2**20,
                  result["max_rss_single_mb"], out if kind in ("loop", "beam") else None)
  print(f"  {name:28s} n={n:5d} shards={num_shards:2d}: {m.seconds:7.1f} s "
        f"({m.images_per_s:7.1f} images/s), wall {wall:6.1f} s, peak tree PSS "
        f"{m.peak_tree_mb:6.0f} MB, max single RSS {m.max_rss_single_mb:6.0f} MB", flush=True)
  return m


def best_of(runs: List[Measurement]) -> Measurement:
  """The fastest run; memory is the largest peak of all runs; `spread` keeps all times."""
  best = min(runs, key=lambda m: m.seconds)
  return dataclasses.replace(best, peak_tree_mb=max(m.peak_tree_mb for m in runs),
                             max_rss_single_mb=max(m.max_rss_single_mb for m in runs),
                             all_seconds=sorted(m.seconds for m in runs))


def _digest(directory: str) -> Dict[str, str]:
  out = {}
  for name in sorted(os.listdir(directory)):
    if name.endswith(".gz"):
      with open(os.path.join(directory, name), "rb") as f:
        out[name] = hashlib.sha256(f.read()).hexdigest()
  return out


def gzip_levels(n: int = 300) -> List[str]:  # runs in a child (imports TF)
  """Write time and size of the same records at gzip levels 1, 6 and 9."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  ann = subset_json(n)
  with open(ann) as f:
    names = [im["file_name"] for im in json.load(f)["images"]]
  payloads = []
  for name in names:
    with open(os.path.join(DATASET, "images", "train", name), "rb") as f:
      payloads.append(f.read())
  raw = sum(len(p) for p in payloads)
  rows = []
  for level in (0, 1, 6, 9):
    path = os.path.join(DATA_DIR, f"gzip_{level}.gz")
    start = time.perf_counter()
    options = tf.io.TFRecordOptions(compression_type="GZIP", compression_level=level)
    with tf.io.TFRecordWriter(path, options) as writer:
      for p in payloads:
        writer.write(p)
    seconds = time.perf_counter() - start
    size = os.path.getsize(path)
    rows.append(f"| {level} | {raw / seconds / 1e6:.0f} MB/s | {size / raw * 100:.1f}% |")
    os.remove(path)
  return rows


def _marginal(results: List[Measurement], name: str, sizes: Sequence[int]
              ) -> Optional[Tuple[float, float]]:
  """(images/s of the extra images, fixed seconds) from the smallest and largest N."""
  by = {m.images: m for m in results if m.name == name}
  lo, hi = min(sizes), max(sizes)
  if lo == hi or lo not in by or hi not in by or by[hi].seconds <= by[lo].seconds:
    return None
  rate = (hi - lo) / (by[hi].seconds - by[lo].seconds)
  return rate, by[lo].seconds - lo / rate


def markdown(results: List[Measurement], sizes: Sequence[int], gzip_rows: List[str],
             identical: Dict[int, bool], command: str, cpu: str, repeats: int) -> str:
  by = {(m.name, m.images): m for m in results}
  names = []
  for m in results:
    if m.name not in names:
      names.append(m.name)
  big = max(sizes)
  raw = by[("raw read", big)]
  loop = by[(LOOP, big)]
  lines = [
      HEADING,
      "",
      f"Command: `{command}` ({cpu}, 2 cores shared with other jobs: absolute numbers drift "
      "between runs, compare within one run). Dataset: the shapes generator at 640x480 (75% "
      f"JPEG q90, 25% PNG; mean {_mean_kb(big):.0f} KB per file), the first N images of one "
      "4,000-image set, files in the page cache. Each run is a fresh subprocess; time = the "
      "conversion call after imports (Beam: pipeline construction, JSON pre-flight, worker "
      f"start-up included), best of {repeats} interleaved runs (all runs listed); wall = the "
      "whole subprocess of the best run. Peak tree PSS = sampled peak of the summed PSS of the "
      "process and all its children (largest over the runs). Shard count automatic "
      "(~128 MiB per shard).",
      "",
      "| stage | N | shards | time (s) | images/s | all runs (s) | wall (s) | "
      "peak tree PSS (MB) | max single-process RSS (MB) |",
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for name in names:
    for n in sizes:
      m = by.get((name, n))
      if m:
        lines.append(f"| {name} | {n} | {m.num_shards if name not in ('raw read', COPY) else '-'} | "
                     f"{m.seconds:.2f} | {m.images_per_s:.0f} | "
                     f"{', '.join(f'{t:.1f}' for t in m.all_seconds)} | {m.wall:.1f} | "
                     f"{m.peak_tree_mb:.0f} | {m.max_rss_single_mb:.0f} |")
  lines += ["", f"Summary at N={big} (marginal = extra images per extra second between "
            f"N={min(sizes)} and N={big}; fixed = the start-up cost that remains):", "",
            "| stage | images/s | vs python loop | raw read / this | marginal images/s | "
            "fixed (s) | peak tree PSS N=" + f"{min(sizes)} -> {big} (MB) |",
            "|---|---|---|---|---|---|---|"]
  for name in names:
    m = by.get((name, big))
    small = by.get((name, min(sizes)))
    if not m:
      continue
    marginal = _marginal(results, name, sizes)
    lines.append(
        f"| {name} | {m.images_per_s:.0f} | {m.images_per_s / loop.images_per_s:.2f}x | "
        f"{raw.images_per_s / m.images_per_s:.1f}x | "
        f"{f'{marginal[0]:.0f}' if marginal else '-'} | "
        f"{f'{marginal[1]:.1f}' if marginal else '-'} | "
        f"{small.peak_tree_mb if small else 0:.0f} -> {m.peak_tree_mb:.0f} |")
  lines += ["", *findings(results, sizes), "", *DECISIONS]
  lines += ["", "Shards of the python loop byte-identical to the Beam (in_memory) shards: " +
            ", ".join(f"N={n}: {'yes' if ok else 'NO'}" for n, ok in identical.items()) + ".",
            "", "gzip level of the TFRecord writer (the same 300 images written as records; "
            "JPEG/PNG do not compress):",
            "", "| level | write rate | size vs raw |", "|---|---|---|", *gzip_rows, ""]
  return "\n".join(lines)


DECISIONS = [
    "Decisions (data/convert.py):",
    "",
    "- Shards are gzip TFRecords written at deflate level 0 (GZIP_LEVEL): JPEG/PNG do not "
    "compress (table below), and deflating them at level >= 1 was most of the conversion's "
    "CPU time.",
    "- Local default (pipeline_args_with_defaults, when no --runner is given): the FnApiRunner "
    "(the DirectRunner's engine, without its attempt to download the Prism runner) in "
    "in_memory mode, fastest or tied at every size in these runs; multi_threading adds no "
    "speed (the per-image work holds the GIL) and multi_processing adds 6-30 s of start-up "
    "and twice the memory without a reliably higher rate on 2 shared cores. Dataflow args "
    "pass through unchanged.",
    "- Image bytes never cross a Beam stage: the pipeline groups per-image metadata by shard "
    "and each shard writer reads its images (8 in flight) and streams them to its file, so "
    "memory does not grow with the dataset (rows above), at the price of one writer per shard "
    "(parallelism <= number of shards).",
    "- At these sizes the work is ~0.6 ms per image (nothing is decoded or re-encoded), so "
    "Beam's fixed cost (pipeline construction, the JSON read twice: pre-flight in the driver "
    "and in the pipeline) is not amortized and the plain loop stays ahead; the raw read is a "
    "page-cache memcpy, from disk or GCS the read itself is the limit.",
]


def findings(results: List[Measurement], sizes: Sequence[int]) -> List[str]:
  """Computed conclusions of one run (no hand-written numbers)."""
  by = {(m.name, m.images): m for m in results}
  small, big = min(sizes), max(sizes)
  beams = [m for m in results if m.name.startswith("beam") and m.images == big]
  if not beams:
    return []
  loop, raw, copy = by[(LOOP, big)], by[("raw read", big)], by.get((COPY, big))
  fastest = min(beams, key=lambda m: m.seconds)
  out = ["Findings of this run:", "",
         f"- Fastest Beam mode at N={big}: {fastest.name}, {fastest.seconds:.2f} s = "
         f"{fastest.images_per_s / loop.images_per_s:.2f}x the python loop's rate, "
         f"{raw.images_per_s / fastest.images_per_s:.1f}x below the raw read rate" +
         (f" and {copy.images_per_s / fastest.images_per_s:.1f}x below the read+write copy rate"
          if copy else "") + "."]
  for m in beams:
    marginal = _marginal(results, m.name, sizes)
    if marginal:
      out.append(f"- {m.name}: {marginal[0]:.0f} images/s marginal "
                 f"({marginal[0] / _marginal(results, LOOP, sizes)[0]:.2f}x the loop's), "
                 f"{marginal[1]:.1f} s fixed cost." if _marginal(results, LOOP, sizes) else "")
  mp = next((m for m in beams if "multi_processing" in m.name), None)
  others = [m for m in beams if m is not mp]
  mp_marginal = _marginal(results, mp.name, sizes) if mp else None
  if mp_marginal and others:
    for ref_name in (min(others, key=lambda m: m.seconds).name, LOOP):
      ref = _marginal(results, ref_name, sizes)
      if ref and mp_marginal[0] > ref[0]:
        n_even = (mp_marginal[1] - ref[1]) / (1 / ref[0] - 1 / mp_marginal[0])
        out.append(f"- multi_processing overtakes {ref_name} from about {n_even:,.0f} images "
                   "(where its extra fixed cost is repaid by its marginal rate).")
  for m in beams + [loop]:
    lo = by.get((m.name, small))
    if lo:
      out.append(f"- Memory of {m.name}: peak tree PSS {lo.peak_tree_mb:.0f} MB at N={small}, "
                 f"{m.peak_tree_mb:.0f} MB at N={big} ({m.peak_tree_mb / lo.peak_tree_mb:.2f}x "
                 f"for {big / small:.0f}x the images).")
  return out


_SIZES_KB: Dict[int, float] = {}


def _mean_kb(n: int) -> float:
  if n not in _SIZES_KB:
    with open(subset_json(n)) as f:
      names = [im["file_name"] for im in json.load(f)["images"]]
    sizes = [os.path.getsize(os.path.join(DATASET, "images", "train", x)) for x in names]
    _SIZES_KB[n] = sum(sizes) / len(sizes) / 1024
  return _SIZES_KB[n]


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sizes", default="1000,2000,4000")
  parser.add_argument("--modes", default=",".join(m for m, _ in BEAM_MODES))
  parser.add_argument("--repeats", type=int, default=3,
                      help="interleaved repeats; the fastest run of each stage is reported")
  parser.add_argument("--write_markdown", action="store_true")
  args = parser.parse_args(argv)
  sizes = sorted(int(s) for s in args.sizes.split(","))
  modes = [(m, w) for m, w in BEAM_MODES if m in args.modes.split(",")]
  ensure_dataset()
  # Warm-up (not reported): fills the bytecode cache of the parent-side and
  # worker-side modules and the page cache.
  child_result(run_child("estimate", 50), "warm-up estimate")
  child_result(run_child("raw", max(sizes)), "warm-up read")
  warm = os.path.join(DATA_DIR, "out", "warmup")
  subprocess.run(["rm", "-rf", warm], check=True)
  child_result(run_child("beam", 50, warm, 1, "multi_processing", 2), "warm-up beam")
  shards = {n: int(child_result(run_child("estimate", n), "estimate")["num_shards"])
            for n in sizes}
  stages = [("raw read", "raw", "", 0), (COPY, "copy", "", 0), (LOOP, "loop", "", 0)] + [
      (f"beam {mode} ({workers} worker{'s' if workers > 1 else ''})", "beam", mode, workers)
      for mode, workers in modes]
  runs: Dict[Tuple[str, int], List[Measurement]] = {}
  identical: Dict[int, bool] = {}
  for repeat in range(args.repeats):  # Interleaved, so load drift hits every stage alike.
    print(f"repeat {repeat + 1}/{args.repeats}", flush=True)
    for n in sizes:
      for name, kind, mode, workers in stages:
        m = measure(name, kind, n, shards[n], mode, workers)
        runs.setdefault((name, n), []).append(m)
      if len(stages) < 4:
        continue
      loop_dir = runs[(LOOP, n)][-1].out_dir
      beam_dir = os.path.join(runs[(stages[3][0], n)][-1].out_dir, "Split-train")
      identical[n] = identical.get(n, True) and _digest(loop_dir) == _digest(beam_dir)
  results = [best_of(runs[(name, n)]) for name, *_ in stages for n in sizes]
  gzip_rows = child_result(run_child("gzip", 300), "gzip levels")["rows"]
  cpu = "unknown CPU"
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  command = ".venv/bin/python benchmarks/bench_data.py " + " ".join(
      sys.argv[1:] if argv is None else argv)
  section = markdown(results, sizes, gzip_rows, identical, command.strip(), cpu, args.repeats)
  common.publish(section, HEADING, args.write_markdown)
  return 0


if __name__ == "__main__":
  if len(sys.argv) > 1 and sys.argv[1] == "--_child":
    child_main(sys.argv[2:])
  else:
    sys.exit(main())
