"""Downloads COCO 2017 detection data, unzips it, and optionally converts it.

    python -m data.download_coco --output_dir /data/coco [--splits train,val]
        [--tfrecord_dir /data/coco_tfrecords [--num_shards N] [Beam args ...]]
        [--dry_run]

Lays out <output_dir>/annotations/instances_{train,val}2017.json and
<output_dir>/{train,val}2017/*.jpg (the official layout, what
pipeline/datasets.py expects). Downloads go to "<zip>.part" and are renamed
when complete; a step whose result already exists is skipped, so an
interrupted run can be restarted. With --tfrecord_dir the splits are then
converted by data.convert.convert_coco; any argument this script does not
know is passed to Beam (e.g. --runner=DataflowRunner --project P --region R
--temp_location gs://B/tmp). --dry_run prints the plan and touches nothing.

Downloading and unzipping need a local disk (train2017.zip is ~19 GB, as much
again unzipped; zips are deleted after unzipping unless --keep_zips). For
Dataflow, copy the unzipped folders to GCS (gsutil -m cp -r)
and run `python -m data.convert` on the gs:// paths with the Dataflow args.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import urllib.request
import zipfile
from typing import Dict, List, Optional, Sequence, Tuple

from retinanet import console


BASE_URL = "http://images.cocodataset.org"
ANNOTATIONS_URL = f"{BASE_URL}/annotations/annotations_trainval2017.zip"
IMAGES_URLS = {"train": f"{BASE_URL}/zips/train2017.zip", "val": f"{BASE_URL}/zips/val2017.zip"}
SPLITS = ("train", "val")
_CHUNK_BYTES = 8 * 2**20

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Download:
  """One zip: fetched from `url` to `zip_path`, unzipped into `extract_dir`.

  `marker` is a path that exists once the zip has been unzipped.
  """
  url: str
  zip_path: str
  extract_dir: str
  marker: str


@dataclasses.dataclass(frozen=True)
class Plan:
  output_dir: str
  downloads: Tuple[Download, ...]
  splits: Dict[str, Tuple[str, str]]  # name -> (annotations json, image dir)
  tfrecord_dir: Optional[str]
  num_shards: Optional[int]
  beam_args: Tuple[str, ...]
  keep_zips: bool


def parse_args(argv: Optional[Sequence[str]] = None) -> Tuple[argparse.Namespace, List[str]]:
  """(known args, Beam args): unknown arguments are returned for Beam."""
  parser = argparse.ArgumentParser(description="Download, unzip and convert COCO 2017.")
  parser.add_argument("--output_dir", required=True,
                      help="local directory for the zips and the unzipped dataset")
  parser.add_argument("--splits", default="train,val",
                      help="comma-separated subset of: train, val")
  parser.add_argument("--tfrecord_dir", default=None,
                      help="if given, convert the splits into this directory")
  parser.add_argument("--num_shards", type=int, default=None,
                      help="shards per split (default: from the data size)")
  parser.add_argument("--keep_zips", action="store_true", help="keep the zips after unzipping")
  parser.add_argument("--dry_run", action="store_true", help="print the plan, do nothing")
  console.add_verbose_flag(parser)
  args, beam_args = parser.parse_known_args(argv)
  splits = [s.strip() for s in args.splits.split(",") if s.strip()]
  unknown = [s for s in splits if s not in SPLITS]
  if not splits or unknown:
    parser.error(f"--splits must be a comma-separated subset of {','.join(SPLITS)}; "
                 f"got {args.splits!r}")
  args.splits = [s for s in SPLITS if s in splits]
  if args.output_dir.startswith("gs://"):
    parser.error("--output_dir must be a local directory (zips are unzipped there); copy the "
                 "result to GCS afterwards")
  if args.num_shards is not None and args.num_shards < 1:
    parser.error(f"--num_shards must be >= 1, got {args.num_shards}")
  if beam_args and not args.tfrecord_dir:
    parser.error(f"unrecognized arguments {beam_args}: Beam arguments need --tfrecord_dir")
  return args, beam_args


def make_plan(args: argparse.Namespace, beam_args: Sequence[str]) -> Plan:
  out = args.output_dir
  ann_dir = os.path.join(out, "annotations")
  downloads = [Download(ANNOTATIONS_URL, os.path.join(out, "annotations_trainval2017.zip"), out,
                        os.path.join(ann_dir, "instances_val2017.json"))]
  splits = {}
  for split in args.splits:
    image_dir = os.path.join(out, f"{split}2017")
    downloads.append(Download(IMAGES_URLS[split], os.path.join(out, f"{split}2017.zip"), out,
                              image_dir))
    splits[split] = (os.path.join(ann_dir, f"instances_{split}2017.json"), image_dir)
  return Plan(out, tuple(downloads), splits, args.tfrecord_dir, args.num_shards,
              tuple(beam_args), args.keep_zips)


def describe(plan: Plan) -> str:
  lines = [f"COCO 2017 into {plan.output_dir}"]
  for d in plan.downloads:
    state = "done, skip" if os.path.exists(d.marker) else (
        "zip present, unzip" if os.path.exists(d.zip_path) else "download + unzip")
    lines.append(f"  {d.url} -> {d.zip_path} -> {d.extract_dir} ({state})")
  for split, (ann, images) in plan.splits.items():
    lines.append(f"  split {split}: {ann} + {images}")
  if plan.tfrecord_dir:
    lines.append(f"  convert -> {plan.tfrecord_dir} (num_shards="
                 f"{plan.num_shards or 'auto'}, beam args: {' '.join(plan.beam_args) or 'none'})")
  else:
    lines.append("  no conversion (no --tfrecord_dir)")
  return "\n".join(lines)


def download(url: str, path: str) -> None:
  """Streams `url` to `path` via "<path>.part"; checks Content-Length if sent."""
  partial = path + ".part"
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with urllib.request.urlopen(url) as response, open(partial, "wb") as f:
    expected = response.headers.get("Content-Length")
    received, last_logged = 0, 0
    while True:
      chunk = response.read(_CHUNK_BYTES)
      if not chunk:
        break
      f.write(chunk)
      received += len(chunk)
      if received - last_logged >= 512 * 2**20:
        last_logged = received
        log.info("%s: %.1f GB", os.path.basename(path), received / 1e9)
  if expected is not None and int(expected) != received:
    raise IOError(f"download of {url} stopped at {received} of {expected} bytes; rerun to retry")
  os.replace(partial, path)


def extract(zip_path: str, extract_dir: str) -> None:
  """Unzips (zipfile checks every member's CRC while extracting)."""
  try:
    with zipfile.ZipFile(zip_path) as z:
      z.extractall(extract_dir)
  except zipfile.BadZipFile as e:
    raise IOError(f"{zip_path} is damaged ({e}); delete it and rerun") from e


def run(plan: Plan) -> None:
  os.makedirs(plan.output_dir, exist_ok=True)
  for d in plan.downloads:
    if os.path.exists(d.marker):
      log.info("%s exists, skipping %s", d.marker, d.url)
      continue
    if not os.path.exists(d.zip_path):
      log.info("downloading %s", d.url)
      download(d.url, d.zip_path)
    log.info("unzipping %s", d.zip_path)
    extract(d.zip_path, d.extract_dir)
    if not os.path.exists(d.marker):
      raise IOError(f"{d.zip_path} did not contain {d.marker}")
    if not plan.keep_zips:
      os.remove(d.zip_path)
  if plan.tfrecord_dir:
    from data import convert  # pylint: disable=g-import-not-at-top
    convert.convert_coco(plan.splits, plan.tfrecord_dir, num_shards=plan.num_shards,
                         beam_pipeline_args=list(plan.beam_args),
                         label_map_split="train" if "train" in plan.splits else "val")


def main(argv: Optional[Sequence[str]] = None) -> int:
  args, beam_args = parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  plan = make_plan(args, beam_args)
  print(describe(plan))
  if args.dry_run:
    return 0
  run(plan)
  return 0


if __name__ == "__main__":
  sys.exit(main())
