"""Resolves the dataset a run uses: the built-in sample, COCO 2017, the user's own, or a span
of data drops (`{SPAN}` in a directory pattern, data/spans.py)."""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Optional

from data import image_options
from data import spans as spans_lib
from retinanet import fileio

logger = logging.getLogger(__name__)

SAMPLE = "sample"
COCO2017 = "coco2017"
CUSTOM = "custom"
SPANS = "spans"
DATASETS = (SAMPLE, COCO2017, CUSTOM, SPANS)
# The sample dataset's layout (data/sample_data.py), also that of each span directory:
# (annotations JSON, image folder) per split, relative to the dataset's root.
SPLIT_LAYOUT = {split: tuple(os.path.join(*p.split("/")) for p in paths)
                for split, paths in spans_lib.SPLIT_LAYOUT.items()}


@dataclasses.dataclass(frozen=True)
class DatasetPaths:
  """Where a COCO-format dataset lives (local paths or gs://), and how it is converted."""
  train_annotations: str
  train_images: str
  val_annotations: str
  val_images: str
  num_shards: int = 0          # TFRecord shards per split; 0 = chosen from the data size
  # JSON height/width != the image as displayed: "skip", "rescale" or "error".
  size_mismatch: str = image_options.DEFAULT_SIZE_MISMATCH
  convert_unsupported_images: bool = False  # WebP, TIFF, BMP, GIF -> PNG instead of skipped
  # (both: data/image_options.py)
  span: int = 0  # the data span (recorded on the Examples artifact, as TFX's); 0 = no spans
  # A directory pattern with {SPAN}: the data component takes the latest span when it runs
  # (a scheduled Vertex run); the four paths are then unused.
  span_pattern: str = ""


def _layout_paths(root: str, span: int = 0) -> DatasetPaths:
  (train_json, train_images), (val_json, val_images) = SPLIT_LAYOUT["train"], SPLIT_LAYOUT["val"]
  return DatasetPaths(os.path.join(root, train_json), os.path.join(root, train_images),
                      os.path.join(root, val_json), os.path.join(root, val_images), span=span)


def sample_dataset(data_dir: str, seed: int = 0) -> DatasetPaths:
  """The built-in sample dataset, generated deterministically on first use."""
  from data import sample_data  # pylint: disable=g-import-not-at-top
  paths = _layout_paths(data_dir)
  if not fileio.exists(paths.val_annotations):
    logger.info("Generating the sample dataset into %s", data_dir)
    sample_data.generate_sample_dataset(data_dir, seed=seed)
  return paths


def coco2017_dataset(coco_dir: str, check_exists: bool = True) -> DatasetPaths:
  """COCO 2017 as laid out by `python -m data.download_coco` (or the official zips).

  `check_exists=False` skips the existence check (compiling a Vertex pipeline
  offline for gs:// data).
  """
  paths = DatasetPaths(
      train_annotations=os.path.join(coco_dir, "annotations", "instances_train2017.json"),
      train_images=os.path.join(coco_dir, "train2017"),
      val_annotations=os.path.join(coco_dir, "annotations", "instances_val2017.json"),
      val_images=os.path.join(coco_dir, "val2017"))
  if check_exists and not fileio.exists(paths.train_annotations):
    raise FileNotFoundError(
        f"COCO 2017 not found under {coco_dir} (no {paths.train_annotations}); "
        f"prepare it with: python -m data.download_coco --output_dir {coco_dir}")
  return paths


def custom_dataset(train_annotations: Optional[str], train_images: Optional[str],
                   val_annotations: Optional[str], val_images: Optional[str],
                   check_exists: bool = True) -> DatasetPaths:
  """A user's COCO-format dataset; every path must be given (and exist, if checked)."""
  given = {"--train_annotations": train_annotations, "--train_images": train_images,
           "--val_annotations": val_annotations, "--val_images": val_images}
  missing = [flag for flag, value in given.items() if not value]
  if missing:
    raise ValueError(f"--dataset=custom needs {', '.join(missing)}")
  for flag, value in given.items():
    if check_exists and not fileio.exists(value):
      raise FileNotFoundError(f"{flag}={value} does not exist")
  return DatasetPaths(train_annotations, train_images, val_annotations, val_images)


def span_dataset(span_pattern: str, span: Optional[int] = None) -> DatasetPaths:
  """The latest (or the given) span of `span_pattern`, a directory pattern with {SPAN}
  (e.g. drops/span-{SPAN}) whose directories have the sample dataset's layout."""
  number, root, numbers = spans_lib.resolve_span_dir(span_pattern, span)
  logger.info("Data span %d (%s of spans %s) from %s", number,
              "given" if span is not None else "the latest",
              ", ".join(str(n) for n in numbers), root)
  return _layout_paths(root, span=number)


def runtime_span_dataset(span_pattern: str) -> DatasetPaths:
  """Spans resolved when the data component runs (Vertex: the pattern is on gs:// and each
  scheduled run takes the latest span then)."""
  if spans_lib.SPAN_TOKEN not in span_pattern:
    raise ValueError(f"--span_pattern={span_pattern} has no {spans_lib.SPAN_TOKEN}")
  return DatasetPaths("", "", "", "", span_pattern=span_pattern)
