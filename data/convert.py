"""COCO -> sharded gzip TFRecords of tf.train.Example, as an Apache Beam job.

Output (the TFX `Examples` artifact layout, plus two JSON files):

    <output_dir>/Split-<name>/data_tfrecord-00000-of-00004.gz   (one Example per image)
    <output_dir>/label_map.json                                 (retinanet.coco.LabelMap.to_json)
    <output_dir>/conversion_report.json                          (per-split counts, below)
    <output_dir>/ground_truth/instances_<name>.json             (COCO ground truth, below)

Ground truth for evaluation: the split's annotation file restricted to the
images that were written, with the original image ids, annotation ids,
category ids, boxes, areas and crowd flags (no segmentation), and the label
map's categories. COCO AP is computed against it, as against the original
instances_val2017.json, not against the records (whose boxes are clipped and
whose objects the input pipeline may truncate). Annotations whose category is
not in the label map, or whose box is not finite, cannot be scored and are
left out (counted as unknown_category / degenerate_box). Each shard writer
writes the part of its images; one step merges the parts in shard order.

Per split: the annotation file is read ONCE, streamed (ijson: segmentation
polygons are never built, so memory is bounded by the slim per-image records,
not by the raw JSON), validated record by record, grouped by image and written
as one small JSON-lines input file per shard (`md5(image id) % num_shards`).
The Beam job then runs one DoFn per shard: it reads its input file, reads the
images' bytes in image-id order (tf.io.gfile for gs:// and other URLs; a few
threads read ahead) and streams the Examples into the shard file. Image bytes
never cross a stage boundary: memory is one shard's metadata plus a few images,
and the same input gives byte-identical shards (no order depends on bundle,
thread or worker scheduling).

Label map: built from the categories of the split named `label_map_split`
("train") and reused for every other split; an annotation whose category id
is not in it is dropped and counted ("unknown_category"). A category id that
two splits name differently is an error.

Bad input, one outcome each (counted in conversion_report.json):
  image file missing                 -> image skipped, "missing_image"
  unreadable header / truncated file -> image skipped, "corrupt_image"
  not JPEG or PNG (BMP, GIF, WebP, TIFF)
                                     -> image skipped, "unsupported_format"; with
                                        convert_unsupported_images: stored as PNG,
                                        counted in "images_converted" per format
  JSON height/width differs from the image as displayed (EXIF orientation applied)
                                     -> size_mismatch="skip" (default): image skipped,
                                        "size_mismatch"; "rescale": boxes fitted to the
                                        image (data/example_codec.py), counted in
                                        size_mismatch.rescaled/reoriented; "error": skipped
                                        and, after the job, SizeMismatchError listing them.
                                        Either way "image_size_mismatch" counts them and
                                        size_mismatch.files names the first few.
  JPEG with an EXIF orientation != 1 -> written, original bytes, image/orientation and the
                                        displayed size stored, "oriented_images" (which
                                        also counts converted images whose EXIF
                                        orientation was applied to their PNG)
  image id repeated in the JSON      -> later duplicates skipped, "duplicate_image_id"
  annotation of an unknown image id  -> annotation dropped, "missing_image_id"
  annotations of a skipped image     -> dropped, "image_skipped"
  category id not in the label map   -> annotation dropped, "unknown_category"
  box partly outside the image       -> clipped, counted in "boxes_clipped"
  box empty after clipping/non-finite-> annotation dropped, "degenerate_box"
  image without annotations          -> written (a negative), "negative_images"
  crowd annotation (iscrowd=1)       -> written with is_crowd=1, "crowd_boxes"
Structural JSON errors (missing keys, wrong types, bad syntax) stop the run
before the pipeline starts, naming the file and the record. Read errors other
than "not found" (permissions, transient storage errors) fail the bundle so
that the runner retries it instead of silently dropping images.

Statistics per split reconcile exactly:
  images_in      == images_written + sum(images_skipped.values())
  annotations_in == boxes_written  + sum(annotations_dropped.values())
  image_size_mismatch == images_skipped.size_mismatch + size_mismatch.rescaled
                         + size_mismatch.reoriented
"""
# No `from __future__ import annotations`: Beam reads the type hints of the
# functions given to Map/ParDo and would log each string hint it cannot use.
import argparse
import collections
import concurrent.futures
import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import re
import sys
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
import tensorflow as tf

from data import example_codec as codec
from data.image_options import DEFAULT_SIZE_MISMATCH, ERROR, SIZE_MISMATCH_POLICIES, ImageOptions
from retinanet import coco, console, fileio
from retinanet import layout
from retinanet.coco import LabelMap
from retinanet.dataloader import schema
from retinanet.ops import orientation as orientation_ops

GROUND_TRUTH_DIR = "ground_truth"
SHARD_PREFIX = "data_tfrecord"
# Shards of ~128 MiB: large enough for efficient sequential reads, small
# enough that a retried shard is cheap and readers can interleave many.
DEFAULT_TARGET_SHARD_BYTES = 128 * 2**20
# Image files stat'ed (evenly spaced in image-id order) to estimate the
# dataset size when num_shards is not given.
SIZE_SAMPLE = 64
# Shards are gzip files (the format TFX ExampleGen writes and readers expect)
# written at deflate level 0 ("stored" blocks): JPEG/PNG payloads do not
# compress (level 1 saved 0.3% of the bytes) while deflating them ran at
# ~46 MB/s per core against ~1 GB/s for level 0, making compression 95% of
# the conversion's CPU time. Measured in benchmarks/bench_data.py.
GZIP_LEVEL = 0
# Used when the caller names no runner: the FnApiRunner is the engine of
# Beam's DirectRunner; naming it skips the DirectRunner's attempt to download
# and start the Prism runner (which fails offline and ignores the modes
# below). Running mode chosen by measurement on 2 cores (benchmarks/
# bench_data.py, BENCHMARKS.md "## Data stage", 1,000-4,000 640x480 images):
# in_memory was fastest or tied at every size (~0.1-0.6 s fixed cost);
# multi_threading x2 was no faster (the per-image work holds the GIL);
# multi_processing x2 starts two interpreters that import Beam and TF (6-30 s)
# and doubles the memory. Since every image is fully decoded at conversion
# (~4-8 ms of CPU for a 640x480 JPEG), the per-image work dominates from a few
# thousand images on, and the shard writers parallelize across processes:
# above MULTI_PROCESSING_MIN_BYTES of annotation JSON (COCO: ~3.8 KB per image,
# so ~5,000 images) local runs use one worker process per core
# (docs/benchmarks-history.md "## Data stage at COCO scale"). Dataflow for more.
LOCAL_RUNNER = "FnApiRunner"
DEFAULT_DIRECT_ARGS = ("--direct_running_mode=in_memory",)
MULTI_PROCESSING_MIN_BYTES = 20 * 2**20
LARGE_DATA_DIRECT_ARGS = ("--direct_running_mode=multi_processing", "--direct_num_workers=0")
# Threads per shard writer that read and encode images ahead of the writer.
READ_THREADS = 4
PROGRESS_EVERY_IMAGES = 1000
PROGRESS_EVERY_SECONDS = 60.0
_METRICS_NAMESPACE = "coco_to_tfrecords"
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_]+$")

# Keys of the flat counter dicts that the DoFns emit and the combine sums.
_SKIP = "images_skipped/"
_DROP = "annotations_dropped/"
_CLASS = "boxes_per_class/"
_CONVERTED = "images_converted/"
_MISMATCH_FILE = "size_mismatch_file/"  # one key per file name, at most LISTED_FILES per shard
# File names of size mismatches listed in the report and the log (per split).
LISTED_FILES = 10

log = logging.getLogger(__name__)


class SizeMismatchError(ValueError):
  """size_mismatch="error" and some images' JSON size is not their size as displayed."""


def split_dir(output_dir: str, split: str) -> str:
  return os.path.join(output_dir, f"Split-{split}")


def ground_truth_path(output_dir: str, split: str) -> str:
  """The COCO ground-truth JSON of a converted split (module docstring)."""
  return os.path.join(output_dir, GROUND_TRUTH_DIR, f"instances_{split}.json")


def _ground_truth_part_path(output_dir: str, split: str, shard: int, num_shards: int) -> str:
  return os.path.join(output_dir, GROUND_TRUTH_DIR, f".parts-{split}",
                      f"part-{shard:05d}-of-{num_shards:05d}.json")


def ground_truth_annotation(ann: Mapping[str, Any], image_id: int,
                            label_map: LabelMap) -> Optional[Dict[str, Any]]:
  """The evaluation record of a validated annotation, or None when it cannot be scored.

  Keeps the original id, category id, box and area; a missing area becomes the
  box area and a missing iscrowd 0 (what pycocotools needs). A box whose numbers, or
  whose area, are not finite (w * h can overflow) cannot be scored.
  """
  if not label_map.has_category(ann["category_id"]):
    return None
  bbox = [float(v) for v in ann["bbox"]]
  area = ann.get("area")
  area = float(area) if area is not None and math.isfinite(area) else bbox[2] * bbox[3]
  if not all(math.isfinite(v) for v in bbox + [area]):
    return None
  return {"id": ann.get("id"), "image_id": image_id, "category_id": ann["category_id"],
          "bbox": bbox, "area": area, "iscrowd": int(ann.get("iscrowd", 0))}


def shard_name(shard: int, num_shards: int) -> str:
  return f"{SHARD_PREFIX}-{shard:05d}-of-{num_shards:05d}.gz"


def shard_of(image_id: int, num_shards: int) -> int:
  """Stable shard of an image id (md5, independent of process and Python hash seed)."""
  digest = hashlib.md5(str(image_id).encode()).digest()
  return int.from_bytes(digest[:8], "big") % num_shards


def sum_counters(counters: Iterable[Mapping[str, int]]) -> Dict[str, int]:
  """Sums flat counter dicts (the CombineGlobally function of the stats)."""
  total: Dict[str, int] = collections.Counter()
  for c in counters:
    total.update(c)
  return dict(total)


def _records_path(output_dir: str, split: str, shard: int, num_shards: int) -> str:
  """The slim input records of one shard (JSON lines, written by `write_shard_inputs`)."""
  return os.path.join(output_dir, f".records-{split}", f"part-{shard:05d}-of-{num_shards:05d}.jsonl")


def write_shard_inputs(slim: coco.SlimCoco, split: str, output_dir: str,
                       num_shards: int) -> Dict[str, int]:
  """Groups a split's slim records by image and writes one JSON-lines file per shard.

  Each line is `[image record, [its annotation records]]`, sorted by image id,
  so a shard writer reads only its own images. Returns the JSON-level counters
  (images_in, annotations_in, duplicate image ids, annotations of unknown image
  ids), each case logged once.
  """
  counters: Dict[str, int] = collections.Counter(
      images_in=len(slim.images), annotations_in=len(slim.annotations))
  images: Dict[int, Dict[str, Any]] = {}
  for image in slim.images:
    if image["id"] in images:
      counters[_SKIP + codec.DUPLICATE_IMAGE_ID] += 1
      log.warning("[%s] skip image %s (%s): duplicate_image_id, image id already used by %s",
                  split, image["id"], image["file_name"], images[image["id"]]["file_name"])
      continue
    images[image["id"]] = image
  by_image: Dict[int, List[Dict[str, Any]]] = collections.defaultdict(list)
  for ann in slim.annotations:
    if ann["image_id"] not in images:
      counters[_DROP + codec.MISSING_IMAGE_ID] += 1
      log.warning("[%s] drop annotation %s: missing_image_id, image id %s is not in %s",
                  split, ann.get("id", "?"), ann["image_id"], slim.source)
      continue
    by_image[ann["image_id"]].append({k: v for k, v in ann.items() if k != "image_id"})
  per_shard: List[List[int]] = [[] for _ in range(num_shards)]
  for image_id in sorted(images):
    per_shard[shard_of(image_id, num_shards)].append(image_id)
  for shard, image_ids in enumerate(per_shard):
    path = _records_path(output_dir, split, shard, num_shards)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
      f.write("")  # creates the file even for a shard without images
      for image_id in image_ids:
        f.write(json.dumps([images[image_id], by_image.get(image_id, [])]) + "\n")
  return dict(counters)



def _ordered_map(pool: concurrent.futures.Executor, fn, items: Sequence[Any], window: int):
  """pool.map with at most `window` items in flight, results in input order."""
  pending: collections.deque = collections.deque()
  it = iter(items)
  for item in itertools.islice(it, window):
    pending.append(pool.submit(fn, item))
  while pending:
    result = pending.popleft().result()
    for item in itertools.islice(it, 1):
      pending.append(pool.submit(fn, item))
    yield result


class WriteShardFn(beam.DoFn):
  """(shard, records) -> writes the shard's gzip TFRecord file; emits counters.

  Images are read and encoded by `read_threads` threads, at most twice that
  many ahead of the writer, and written in image-id order: reads (and, on
  gs://, their latency) overlap with encoding and writing, memory stays at a
  few images, and the file is the same as with one thread.
  """

  def __init__(self, split: str, image_dir: str, output_dir: str, num_shards: int,
               label_map: LabelMap, compression_level: int = GZIP_LEVEL,
               read_threads: int = READ_THREADS,
               image_options: ImageOptions = ImageOptions()):
    self._split = split
    self._image_options = image_options
    self._image_dir = image_dir
    self._output_dir = output_dir
    self._output_split_dir = split_dir(output_dir, split)
    self._num_shards = num_shards
    self._label_map = label_map
    self._compression_level = compression_level
    self._read_threads = read_threads
    self._images_written = beam.metrics.Metrics.counter(
        _METRICS_NAMESPACE, f"{split}/images_written")
    self._images_skipped = beam.metrics.Metrics.counter(
        _METRICS_NAMESPACE, f"{split}/images_skipped")
    self._boxes_written = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, f"{split}/boxes_written")

  def process(self, shard: int):
    with tf.io.gfile.GFile(_records_path(self._output_dir, self._split, shard,
                                         self._num_shards), "r") as f:
      records = [json.loads(line) for line in f]
    counters: Dict[str, int] = collections.Counter(shards_written=1)
    path = os.path.join(self._output_split_dir, shard_name(shard, self._num_shards))
    partial = path + ".incomplete"
    options = tf.io.TFRecordOptions(compression_type="GZIP",
                                    compression_level=self._compression_level)
    start = last_log = time.monotonic()
    ground_truth: Dict[str, List[Dict[str, Any]]] = {"images": [], "annotations": []}
    with tf.io.TFRecordWriter(partial, options) as writer, \
        concurrent.futures.ThreadPoolExecutor(self._read_threads) as pool:
      encoded = _ordered_map(pool, self._encode, records, 2 * self._read_threads)
      for done, (serialized, outcome, truth) in enumerate(encoded, 1):
        counters.update(_cap_listed_files(outcome, counters))
        if serialized is not None:
          writer.write(serialized)
          ground_truth["images"].append(truth[0])
          ground_truth["annotations"].extend(truth[1])
          self._images_written.inc()
          self._boxes_written.inc(outcome["boxes_written"])
        else:
          self._images_skipped.inc()
        now = time.monotonic()
        if done % PROGRESS_EVERY_IMAGES == 0 or now - last_log > PROGRESS_EVERY_SECONDS:
          last_log = now
          log.info("[%s] shard %d/%d: %d/%d images (%.0f images/s)", self._split, shard + 1,
                   self._num_shards, done, len(records), done / max(now - start, 1e-9))
    tf.io.gfile.rename(partial, path, overwrite=True)
    fileio.write_json(
        _ground_truth_part_path(self._output_dir, self._split, shard, self._num_shards),
        ground_truth)
    log.info("[%s] wrote %s: %d examples", self._split, path, counters["images_written"])
    yield dict(counters)

  def _encode(self, record: Tuple[Dict[str, Any], List[Dict[str, Any]]]
              ) -> Tuple[Optional[bytes], Dict[str, int], Optional[Tuple[Dict, List[Dict]]]]:
    """(serialized Example or None if skipped, counter increments, ground truth) of one image.

    The ground truth is (COCO image record with the header's size, evaluation
    annotations) for a written image, None for a skipped one.
    """
    image, annotations = record
    outcome: Dict[str, int] = collections.Counter()
    image_path = os.path.join(self._image_dir, image["file_name"])
    try:
      image_bytes = fileio.read_bytes(image_path)
      example, report = codec.build_example(image_bytes, image, annotations, self._label_map,
                                            where=image_path, options=self._image_options)
    except (FileNotFoundError, tf.errors.NotFoundError, codec.ImageSkipped) as e:
      reason = getattr(e, "reason", codec.MISSING_IMAGE)
      message = str(e) if reason != codec.MISSING_IMAGE else f"{image_path} does not exist"
      outcome[_SKIP + reason] += 1
      outcome[_DROP + codec.IMAGE_SKIPPED] += len(annotations)
      if reason == codec.SIZE_MISMATCH:
        outcome["image_size_mismatch"] += 1
        outcome[_MISMATCH_FILE + image["file_name"]] += 1
      log.warning("[%s] skip image %s: %s, %s", self._split, image["id"], reason, message)
      return None, outcome, None
    outcome.update(_image_outcome(report, image, self._split, image_path))
    height = example.features.feature[schema.HEIGHT].int64_list.value[0]
    width = example.features.feature[schema.WIDTH].int64_list.value[0]
    annotations = report.annotations  # in the displayed frame, as the stored boxes
    outcome["images_written"] += 1
    truth = [t for t in (ground_truth_annotation(a, image["id"], self._label_map)
                         for a in annotations) if t is not None]
    outcome["ground_truth_annotations"] += len(truth)
    image_record = {"id": image["id"], "file_name": image["file_name"], "height": height,
                    "width": width}
    return example.SerializeToString(deterministic=True), outcome, (image_record, truth)


def _image_outcome(report: codec.BoxReport, image: Mapping[str, Any], split: str,
                   image_path: str) -> Dict[str, int]:
  """Counter increments of a written image: its boxes, orientation, conversion and size fix.

  Logs the annotations dropped and the boxes fitted (size_mismatch="rescale").
  """
  outcome: Dict[str, int] = collections.Counter()
  outcome["negative_images"] += int(report.boxes_written == 0)
  outcome["boxes_written"] += report.boxes_written
  outcome["boxes_clipped"] += report.boxes_clipped
  outcome["crowd_boxes"] += report.crowd_boxes
  outcome["oriented_images"] += int(report.orientation != orientation_ops.NORMAL)
  for reason, n in report.dropped.items():
    outcome[_DROP + reason] += n
    log.warning("[%s] image %s: dropped %d annotation(s): %s", split, image["id"], n, reason)
  for label in report.labels:
    outcome[_CLASS + str(label)] += 1
  if report.converted_from:
    outcome[_CONVERTED + report.converted_from] += 1
  if report.size_fix:
    outcome["image_size_mismatch"] += 1
    outcome["size_mismatch_" + report.size_fix] += 1
    outcome[_MISMATCH_FILE + image["file_name"]] += 1
    log.warning("[%s] image %s: the JSON says %sx%s (width x height), not the size as displayed "
                "(EXIF orientation %d); %s its %d annotation(s) (size_mismatch=rescale)", split,
                image_path, image.get("width", "?"), image.get("height", "?"),
                report.orientation, report.size_fix, len(report.annotations))
  return outcome


def _cap_listed_files(outcome: Dict[str, int], counters: Mapping[str, int]) -> Dict[str, int]:
  """`outcome` without the file-name keys beyond LISTED_FILES in the shard's `counters`."""
  listed = sum(1 for key in counters if key.startswith(_MISMATCH_FILE))
  for key in [k for k in outcome if k.startswith(_MISMATCH_FILE)]:
    if listed >= LISTED_FILES:
      del outcome[key]
    listed += 1
  return outcome


def merge_ground_truth(counters: Mapping[str, int], output_dir: str, split: str,
                       num_shards: int, label_map: LabelMap,
                       annotations_path: str) -> Dict[str, int]:
  """Merges the shards' ground-truth parts into ground_truth_path(output_dir, split).

  Runs once per split after every shard is written (its input is the summed
  counters, which it returns with "ground_truth_images" added). Reads the
  parts one at a time, so memory holds one shard's records plus the
  annotation ids. Ids that are missing or repeated in the source file are
  renumbered 1..N (pycocotools indexes annotations by id), with a warning.
  """
  parts = [_ground_truth_part_path(output_dir, split, shard, num_shards)
           for shard in range(num_shards)]

  def read(path: str) -> Dict[str, List[Dict[str, Any]]]:
    with tf.io.gfile.GFile(path, "r") as f:
      return json.load(f)

  ids = [a["id"] for part in parts for a in read(part)["annotations"]]
  valid_ids = all(coco.is_int(i) and i >= 1 for i in ids) and len(set(ids)) == len(ids)
  if not valid_ids:
    log.warning("[%s] annotation ids of %s are missing, not positive or repeated: the ground "
                "truth numbers them 1..%d in file order", split, annotations_path, len(ids))
  path = ground_truth_path(output_dir, split)
  categories = [{"id": e.category_id, "name": e.name} for e in label_map.entries]
  num_images = 0
  with tf.io.gfile.GFile(path + ".incomplete", "w") as f:
    f.write('{"info": %s, "categories": %s, "images": [' % (
        json.dumps({"description": f"ground truth of the converted {split} split",
                    "source": annotations_path}), json.dumps(categories)))
    for part in parts:
      for image in read(part)["images"]:
        f.write(("," if num_images else "") + json.dumps(image))
        num_images += 1
    f.write('], "annotations": [')
    number = 0
    for part in parts:
      for ann in read(part)["annotations"]:
        number += 1
        if not valid_ids:
          ann = {**ann, "id": number}
        f.write(("," if number > 1 else "") + json.dumps(ann, allow_nan=False))
    f.write("]}\n")
  tf.io.gfile.rename(path + ".incomplete", path, overwrite=True)
  for part in parts:
    tf.io.gfile.remove(part)
  tf.io.gfile.rmtree(os.path.dirname(parts[0]))
  log.info("[%s] wrote the ground truth %s: %d images, %d annotations", split, path, num_images,
           len(ids))
  return {**counters, "ground_truth_images": num_images}


def summarize_split(counters: Mapping[str, int], split: str, label_map: LabelMap,
                    num_shards: int, annotations_path: str, image_dir: str,
                    size_mismatch: str = DEFAULT_SIZE_MISMATCH) -> Dict[str, Any]:
  """The per-split section of conversion_report.json (every reason listed)."""
  get = lambda key: int(counters.get(key, 0))  # noqa: E731

  def named(prefix: str) -> List[str]:
    return sorted(k[len(prefix):] for k in counters if k.startswith(prefix))

  summary = {
      "split": split,
      "annotations_file": annotations_path,
      "image_dir": image_dir,
      "images_in": get("images_in"),
      "images_written": get("images_written"),
      "images_skipped": {r: get(_SKIP + r) for r in codec.IMAGE_SKIP_REASONS},
      "negative_images": get("negative_images"),
      "image_size_mismatch": get("image_size_mismatch"),
      "size_mismatch": {
          "policy": size_mismatch,
          "skipped": get(_SKIP + codec.SIZE_MISMATCH),
          "rescaled": get("size_mismatch_" + codec.RESCALED),
          "reoriented": get("size_mismatch_" + codec.REORIENTED),
          "files": named(_MISMATCH_FILE)[:LISTED_FILES],
      },
      "oriented_images": get("oriented_images"),
      "images_converted": {fmt: get(_CONVERTED + fmt) for fmt in named(_CONVERTED)},
      "annotations_in": get("annotations_in"),
      "boxes_written": get("boxes_written"),
      "annotations_dropped": {r: get(_DROP + r) for r in codec.ANNOTATION_DROP_REASONS},
      "boxes_clipped": get("boxes_clipped"),
      "crowd_boxes": get("crowd_boxes"),
      "boxes_per_class": {name: get(_CLASS + str(i)) for i, name in enumerate(label_map.names)},
      "ground_truth_file": os.path.join(GROUND_TRUTH_DIR, f"instances_{split}.json"),
      "ground_truth_images": get("ground_truth_images"),
      "ground_truth_annotations": get("ground_truth_annotations"),
      "examples": get("images_written"),
      "num_shards": num_shards,
      "shards_written": get("shards_written"),
      "shard_files": [shard_name(s, num_shards) for s in range(num_shards)],
  }
  check_reconciles(summary)
  return summary


def check_reconciles(summary: Mapping[str, Any]) -> None:
  """Raises AssertionError when a split's counts do not add up (a converter bug)."""
  split = summary["split"]
  images = summary["images_written"] + sum(summary["images_skipped"].values())
  boxes = summary["boxes_written"] + sum(summary["annotations_dropped"].values())
  problems = []
  if images != summary["images_in"]:
    problems.append(f"images_in={summary['images_in']} but written + skipped = {images}")
  if boxes != summary["annotations_in"]:
    problems.append(f"annotations_in={summary['annotations_in']} but written + dropped = {boxes}")
  mismatch = summary.get("size_mismatch")
  if mismatch and summary["image_size_mismatch"] != (
      mismatch["skipped"] + mismatch["rescaled"] + mismatch["reoriented"]):
    problems.append(f"image_size_mismatch={summary['image_size_mismatch']} but skipped + "
                    f"rescaled + reoriented = {mismatch}")
  if sum(summary["boxes_per_class"].values()) != summary["boxes_written"]:
    problems.append("boxes_per_class does not sum to boxes_written")
  if summary["shards_written"] != summary["num_shards"]:
    problems.append(f"{summary['shards_written']} of {summary['num_shards']} shards written")
  if summary.get("ground_truth_images", summary["images_written"]) != summary["images_written"]:
    problems.append(f"the ground truth has {summary['ground_truth_images']} images but "
                    f"{summary['images_written']} were written")
  if problems:
    raise AssertionError(f"split {split}: statistics do not reconcile: {'; '.join(problems)}")


def write_stats_json(summaries: List[Dict[str, Any]], path: str, label_map_file: str,
                     label_map_source: str) -> None:
  """Writes conversion_report.json; `label_map_source` is a split name or "given"."""
  stats = {
      "label_map_file": label_map_file,
      "label_map_source": label_map_source,
      "splits": {s["split"]: s for s in sorted(summaries, key=lambda s: s["split"])},
  }
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(json.dumps(stats, indent=1) + "\n")


class CocoToTFRecords(beam.PTransform):
  """One split: shard input records -> shard files; outputs the split summary dict.

  The shards' input records are written beforehand by `write_shard_inputs`
  (whose counters are `input_counters`). The output PCollection holds exactly
  one element, the split's section of conversion_report.json (`summarize_split`).
  """

  def __init__(self, *, split: str, annotations_path: str, image_dir: str,
               output_dir: str, label_map: LabelMap, num_shards: int,
               input_counters: Mapping[str, int],
               compression_level: int = GZIP_LEVEL, read_threads: int = READ_THREADS,
               image_options: ImageOptions = ImageOptions()):
    super().__init__()
    if num_shards < 1:
      raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    self._split = split
    self._annotations_path = annotations_path
    self._image_dir = image_dir
    self._output_dir = output_dir
    self._label_map = label_map
    self._num_shards = num_shards
    self._input_counters = dict(input_counters)
    self._compression_level = compression_level
    self._read_threads = read_threads
    self._image_options = image_options

  def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
    shard_counters = (pbegin
                      | "Shards" >> beam.Create(list(range(self._num_shards)))
                      | "Distribute" >> beam.Reshuffle()
                      | "WriteShards" >> beam.ParDo(WriteShardFn(
                          self._split, self._image_dir, self._output_dir,
                          self._num_shards, self._label_map, self._compression_level,
                          self._read_threads, self._image_options)))
    input_counters = (pbegin
                      | "InputCounters" >> beam.Create([self._input_counters]))
    return ((input_counters, shard_counters)
            | "AllCounters" >> beam.Flatten()
            | "SumCounters" >> beam.CombineGlobally(sum_counters)
            | "MergeGroundTruth" >> beam.Map(merge_ground_truth, self._output_dir, self._split,
                                             self._num_shards, self._label_map,
                                             self._annotations_path)
            | "Summarize" >> beam.Map(summarize_split, self._split, self._label_map,
                                      self._num_shards, self._annotations_path, self._image_dir,
                                      self._image_options.size_mismatch))


def convert_split_in_process(*, split: str, annotations_path: str, image_dir: str,
                             output_dir: str, label_map: LabelMap, num_shards: int,
                             input_counters: Mapping[str, int],
                             compression_level: int = GZIP_LEVEL,
                             image_options: ImageOptions = ImageOptions()
                             ) -> Dict[str, Any]:
  """CocoToTFRecords' steps as a plain loop in this process; returns the split summary."""
  writer = WriteShardFn(split, image_dir, output_dir, num_shards, label_map, compression_level,
                        image_options=image_options)
  counters = [dict(input_counters)]
  for shard in range(num_shards):
    counters += list(writer.process(shard))
  merged = merge_ground_truth(sum_counters(counters), output_dir, split, num_shards, label_map,
                              annotations_path)
  return summarize_split(merged, split, label_map, num_shards, annotations_path, image_dir,
                         image_options.size_mismatch)


@dataclasses.dataclass(frozen=True)
class ConversionResult:
  output_dir: str
  split_dirs: Dict[str, str]
  label_map: LabelMap
  label_map_path: str
  stats_path: str
  stats: Dict[str, Any]


def estimate_num_shards(images: Sequence[Mapping[str, Any]], image_dir: str,
                        target_shard_bytes: int = DEFAULT_TARGET_SHARD_BYTES) -> int:
  """ceil(estimated bytes / target), at least 1.

  The size is the mean of up to SIZE_SAMPLE image files, evenly spaced in
  image-id order (so the estimate is deterministic), times the image count.
  """
  if not images:
    return 1
  ordered = sorted(images, key=lambda im: im["id"])
  step = max(1, len(ordered) // SIZE_SAMPLE)
  sizes = []
  for image in ordered[::step][:SIZE_SAMPLE]:
    try:
      sizes.append(tf.io.gfile.stat(os.path.join(image_dir, image["file_name"])).length)
    except tf.errors.NotFoundError:
      continue
  if not sizes:
    return 1
  total = sum(sizes) / len(sizes) * len(ordered)
  return max(1, math.ceil(total / target_shard_bytes))


def pipeline_args_with_defaults(beam_pipeline_args: Optional[Sequence[str]],
                                annotation_bytes: int = 0) -> List[str]:
  """Beam args with local defaults filled in.

  No --runner: adds --runner=FnApiRunner and, unless a --direct_running_mode
  is given, the mode for the data size: LARGE_DATA_DIRECT_ARGS (a worker
  process per core) when the annotation files hold at least
  MULTI_PROCESSING_MIN_BYTES, else DEFAULT_DIRECT_ARGS. An explicit runner
  (DataflowRunner, DirectRunner, ...) passes through unchanged.
  """
  args = list(beam_pipeline_args or [])
  if any(a == "--runner" or a.startswith("--runner=") for a in args):
    return args
  args.append(f"--runner={LOCAL_RUNNER}")
  if not any(a.startswith("--direct_running_mode") for a in args):
    defaults = (LARGE_DATA_DIRECT_ARGS if annotation_bytes >= MULTI_PROCESSING_MIN_BYTES
                else DEFAULT_DIRECT_ARGS)
    args += [a for a in defaults if not any(b.startswith(a.split("=")[0]) for b in args)]
  return args


def annotation_bytes(paths: Sequence[str]) -> int:
  """The summed size of annotation files (a stat each; missing or remote-unknown count 0)."""
  total = 0
  for path in paths:
    try:
      total += tf.io.gfile.stat(path).length
    except tf.errors.NotFoundError:
      pass
  return total


def _check_output_dir(path: str) -> None:
  if tf.io.gfile.exists(path) and tf.io.gfile.listdir(path):
    raise FileExistsError(f"output directory {path} already has files; convert into a new "
                          "directory (shards of an earlier run would be mixed in)")


def _preflight(splits: Mapping[str, Tuple[str, str]], output_dir: str,
               label_map: Optional[LabelMap], label_map_split: str, num_shards: Optional[int],
               target_shard_bytes: int) -> Tuple[LabelMap, Dict[str, int], Dict[str, Dict]]:
  """Reads each annotation file once (streamed, validated, slimmed), builds or checks the
  label map, sizes the shards and writes the shards' input records.

  Returns (label map, {split: num shards}, {split: JSON-level counters}). Any
  invalid file stops everything before the Beam job starts, naming the file
  and the record; the records already written are removed.
  """
  if label_map is None and label_map_split not in splits:
    raise ValueError(f"label_map_split={label_map_split!r} is not one of the splits "
                     f"{sorted(splits)}; pass label_map= or name the split to build it from")
  order = sorted(splits, key=lambda s: s != label_map_split)
  shards: Dict[str, int] = {}
  counters: Dict[str, Dict] = {}
  try:
    for split in order:
      annotations_path, image_dir = splits[split]
      start = time.monotonic()
      slim = coco.read_coco_slim(annotations_path)
      if label_map is None:
        label_map = LabelMap.from_categories(slim.categories, annotations_path)
        log.info("label map from %s (%s): %d classes", split, annotations_path,
                 label_map.num_classes)
      else:
        unknown = coco.check_categories_consistent(label_map, slim.categories, annotations_path)
        if unknown:
          log.warning("[%s] category ids %s of %s are not in the label map; their annotations "
                      "will be dropped as unknown_category", split, unknown, annotations_path)
      shards[split] = num_shards or estimate_num_shards(slim.images, image_dir,
                                                        target_shard_bytes)
      counters[split] = write_shard_inputs(slim, split, output_dir, shards[split])
      log.info("[%s] %d images, %d annotations read from %s in %.1f s -> %d shard(s)", split,
               len(slim.images), len(slim.annotations), annotations_path,
               time.monotonic() - start, shards[split])
      del slim
  except Exception:
    _remove_shard_inputs(output_dir, list(shards))
    raise
  assert label_map is not None
  return label_map, shards, counters


def _remove_shard_inputs(output_dir: str, split_names: Sequence[str]) -> None:
  for split in split_names:
    path = os.path.dirname(_records_path(output_dir, split, 0, 1))
    if tf.io.gfile.exists(path):
      tf.io.gfile.rmtree(path)


def _check_arguments(splits: Mapping[str, Tuple[str, str]], num_shards: Optional[int],
                     compression_level: int, pipeline_and_args: bool) -> None:
  if not splits:
    raise ValueError("splits is empty: give at least one {name: (annotations_json, image_dir)}")
  for split in splits:
    if not _SPLIT_NAME.match(split):
      raise ValueError(f"split name {split!r} must be letters, digits or underscores")
  if pipeline_and_args:
    raise ValueError("pass either beam_pipeline or beam_pipeline_args, not both")
  if num_shards is not None and num_shards < 1:
    raise ValueError(f"num_shards must be >= 1 or None (automatic), got {num_shards}")
  if not 0 <= compression_level <= 9:
    raise ValueError(f"compression_level must be 0..9, got {compression_level}")


def _log_conversion(stats: Mapping[str, Any], seconds: float, output_dir: str) -> None:
  """One line per split: what was read, written, skipped and dropped (counts reconcile), and
  the images whose JSON size was not their displayed size."""
  for split, s in stats["splits"].items():
    log.info("[%s] %d/%d images written (skipped %s; %d EXIF-oriented, converted %s), %d boxes "
             "(dropped %s, clipped %d), %d shard(s)", split, s["images_written"], s["images_in"],
             {k: v for k, v in s["images_skipped"].items() if v} or "none",
             s["oriented_images"], s["images_converted"] or "none",
             s["boxes_written"], {k: v for k, v in s["annotations_dropped"].items() if v} or
             "none", s["boxes_clipped"], s["num_shards"])
    mismatch = s["size_mismatch"]
    if s["image_size_mismatch"]:
      log.warning("[%s] %d image(s) whose JSON height/width is not their size as displayed "
                  "(size_mismatch=%s: %d skipped, %d rescaled, %d reoriented), e.g. %s", split,
                  s["image_size_mismatch"], mismatch["policy"], mismatch["skipped"],
                  mismatch["rescaled"], mismatch["reoriented"], ", ".join(mismatch["files"]))
  log.info("conversion finished in %.1f s: %s", seconds, output_dir)


def check_no_size_mismatch(stats: Mapping[str, Any], stats_path: str) -> None:
  """Raises SizeMismatchError naming the files of every split with size mismatches."""
  problems = [f"{split}: {s['image_size_mismatch']} image(s), e.g. "
              f"{', '.join(s['size_mismatch']['files'])}"
              for split, s in sorted(stats["splits"].items()) if s["image_size_mismatch"]]
  if problems:
    raise SizeMismatchError(
        "size_mismatch=error: the JSON's height/width differs from the image as displayed "
        f"(EXIF orientation applied) for {'; '.join(problems)} (all counted in {stats_path}). "
        "Fix the JSON, or convert with size_mismatch=skip (leave them out) or rescale (fit "
        "their boxes to the images).")


def convert_coco(splits: Mapping[str, Tuple[str, str]], output_dir: str,
                 num_shards: Optional[int] = None,
                 beam_pipeline: Optional[beam.Pipeline] = None,
                 beam_pipeline_args: Optional[Sequence[str]] = None,
                 label_map: Optional[LabelMap] = None,
                 label_map_split: str = "train",
                 target_shard_bytes: int = DEFAULT_TARGET_SHARD_BYTES,
                 compression_level: int = GZIP_LEVEL,
                 in_process: bool = False,
                 size_mismatch: str = DEFAULT_SIZE_MISMATCH,
                 convert_unsupported_images: bool = False) -> ConversionResult:
  """Converts COCO splits {name: (annotations_json, image_dir)} to TFRecords.

  Builds the label map from `label_map_split` unless `label_map` is given,
  writes it, runs the Beam job (on `beam_pipeline` if given, which this
  function runs and waits for; otherwise on a new pipeline made from
  `pipeline_args_with_defaults(beam_pipeline_args)`),
  and returns the paths and the parsed conversion_report.json.
  `num_shards` applies to every split; None estimates it per split for
  ~target_shard_bytes per shard. `compression_level` is the deflate level of
  the gzip shards (0-9; see GZIP_LEVEL). `in_process` runs the same steps as
  a plain loop in this process instead of a Beam job (the same output; for
  tests and as the single-process reference of benchmarks).
  `size_mismatch` ("skip", "rescale" or "error") is what happens to an image
  whose JSON height/width is not its size as displayed, and
  `convert_unsupported_images` stores WebP, TIFF, BMP and GIF as PNG instead of
  skipping them (module docstring). With "error", the conversion runs to the
  end (the report counts every case) and then raises SizeMismatchError naming
  the files.
  """
  _check_arguments(splits, num_shards, compression_level,
                   beam_pipeline is not None and bool(beam_pipeline_args))
  image_options = ImageOptions(size_mismatch, convert_unsupported_images)
  label_map_source = label_map_split if label_map is None else "given"
  split_dirs = {s: split_dir(output_dir, s) for s in splits}
  for path in split_dirs.values():
    _check_output_dir(path)
  label_map, shards, input_counters = _preflight(splits, output_dir, label_map, label_map_split,
                                                 num_shards, target_shard_bytes)
  for path in split_dirs.values():
    tf.io.gfile.makedirs(path)
  label_map_path = os.path.join(output_dir, layout.LABEL_MAP_FILE)
  stats_path = os.path.join(output_dir, layout.CONVERSION_REPORT_FILE)
  coco.save_label_map(label_map, label_map_path)

  start = time.monotonic()
  jobs = {split: dict(split=split, annotations_path=splits[split][0], image_dir=splits[split][1],
                      output_dir=output_dir, label_map=label_map, num_shards=shards[split],
                      input_counters=input_counters[split], compression_level=compression_level,
                      image_options=image_options) for split in sorted(splits)}
  try:
    if in_process:
      write_stats_json([convert_split_in_process(**job) for job in jobs.values()], stats_path,
                       layout.LABEL_MAP_FILE, label_map_source)
    else:
      pipeline = beam_pipeline or beam.Pipeline(options=PipelineOptions(
          pipeline_args_with_defaults(beam_pipeline_args,
                                      annotation_bytes([a for a, _ in splits.values()]))))
      summaries = [pipeline | f"Convert[{split}]" >> CocoToTFRecords(**job)
                   for split, job in jobs.items()]
      _ = (summaries
           | "AllSplits" >> beam.Flatten()
           | "ToList" >> beam.combiners.ToList()
           | "WriteStats" >> beam.Map(write_stats_json, stats_path, layout.LABEL_MAP_FILE,
                                      label_map_source))
      pipeline.run().wait_until_finish()
  finally:
    _remove_shard_inputs(output_dir, list(splits))
  with tf.io.gfile.GFile(stats_path, "r") as f:
    stats = json.load(f)
  _log_conversion(stats, time.monotonic() - start, output_dir)
  if size_mismatch == ERROR:
    check_no_size_mismatch(stats, stats_path)
  return ConversionResult(output_dir, split_dirs, label_map, label_map_path, stats_path, stats)


def _parse_split(text: str) -> Tuple[str, Tuple[str, str]]:
  parts = text.split(",")
  if len(parts) != 3:
    raise argparse.ArgumentTypeError(
        f"--split {text!r} must be NAME,ANNOTATIONS_JSON,IMAGE_DIR")
  return parts[0], (parts[1], parts[2])


def main(argv: Optional[Sequence[str]] = None) -> int:
  """CLI: python -m data.convert --split train,ANN,IMGS --split val,ANN,IMGS
  --output_dir OUT [--num_shards N] [--size_mismatch skip|rescale|error]
  [--convert_unsupported_images] [Beam args, e.g. --runner=DataflowRunner ...]."""
  parser = argparse.ArgumentParser(description="COCO -> sharded gzip TFRecords (Beam).")
  parser.add_argument("--split", action="append", type=_parse_split, required=True,
                      help="NAME,ANNOTATIONS_JSON,IMAGE_DIR (repeat per split)")
  parser.add_argument("--output_dir", required=True)
  parser.add_argument("--num_shards", type=int, default=None)
  parser.add_argument("--label_map_split", default="train")
  parser.add_argument("--size_mismatch", choices=SIZE_MISMATCH_POLICIES,
                      default=DEFAULT_SIZE_MISMATCH,
                      help="an image whose JSON height/width is not its size as displayed: "
                           "skip it, rescale (fit) its boxes, or stop with an error listing the "
                           "files (default: %(default)s)")
  parser.add_argument("--convert_unsupported_images", action="store_true",
                      help="store WebP, TIFF, BMP and GIF images as PNG instead of skipping them")
  console.add_verbose_flag(parser)
  args, beam_args = parser.parse_known_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  result = convert_coco(dict(args.split), args.output_dir, num_shards=args.num_shards,
                        beam_pipeline_args=beam_args, label_map_split=args.label_map_split,
                        size_mismatch=args.size_mismatch,
                        convert_unsupported_images=args.convert_unsupported_images)
  print(result.stats_path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
