"""Data spans, the TFX way: `{SPAN}` in a path pattern, and which spans a run takes.

A team's data arrives in drops, e.g. `DIR/span-{SPAN}/annotations.json` with its images
in `DIR/span-{SPAN}/images`. As in TFX's ExampleGen, `{SPAN}` stands for a non-negative
integer (leading zeros allowed, compared as numbers, so span-10 comes after span-9), and a
run takes, as its RangeConfig would say:
  * the latest span (the default);
  * one given span (`static_range(N, N)`);
  * the last N spans (`rolling_range(num_spans=N)`), oldest first.
This module only finds and selects spans, on local paths or gs://; the data stage
(pipeline/datasets.py for a local run, the data component itself on Vertex, where the
span is resolved when the run starts) builds on it.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Dict, List, Optional, Sequence, Tuple

from retinanet import fileio

SPAN_TOKEN = "{SPAN}"


class SpanError(ValueError):
  """A span pattern that cannot be used, or spans that are not there; names the pattern."""


@dataclasses.dataclass(frozen=True)
class Span:
  number: int
  annotations: str  # the annotations JSON of this span
  images: str       # its image directory


def _check_pattern(pattern: str, what: str) -> None:
  if pattern.count(SPAN_TOKEN) != 1:
    raise SpanError(f"{what} {pattern!r} must contain {SPAN_TOKEN} exactly once, e.g. "
                    f"data/span-{SPAN_TOKEN}/annotations.json")


def _span_regex(pattern: str) -> re.Pattern:
  before, after = pattern.split(SPAN_TOKEN)
  return re.compile(re.escape(before) + r"(\d+)" + re.escape(after) + r"\Z")


def find_spans(annotations_pattern: str, images_pattern: str) -> List[Span]:
  """Every span whose annotations file exists, sorted by span number.

  `images_pattern` (with {SPAN}) gives each span's image directory, which must exist.
  Two files for the same number (span-1 and span-01) are an error, as are none at all.
  """
  _check_pattern(annotations_pattern, "the annotations pattern")
  _check_pattern(images_pattern, "the images pattern")
  regex = _span_regex(annotations_pattern)
  found = {}
  for path in fileio.glob(annotations_pattern.replace(SPAN_TOKEN, "*")):
    match = regex.match(path)
    if not match:
      continue
    number = int(match.group(1))
    if number in found:
      raise SpanError(f"{annotations_pattern}: span {number} matches both {found[number][0]} "
                      f"and {path}")
    found[number] = (path, match.group(1))
  if not found:
    raise SpanError(f"no span matches {annotations_pattern} ({SPAN_TOKEN} = digits)")
  spans = []
  for number in sorted(found):
    path, digits = found[number]
    images = images_pattern.replace(SPAN_TOKEN, digits)
    if not fileio.is_dir(images):
      raise SpanError(f"span {number} ({path}) has no image directory {images} "
                      f"(from {images_pattern})")
    spans.append(Span(number, path, images))
  return spans


def select_spans(spans: Sequence[Span], *, span: Optional[int] = None,
                 last: Optional[int] = None) -> List[Span]:
  """The spans a run takes: `span` (one given span), `last` (the newest N, oldest first), or,
  with neither, the latest one."""
  if span is not None and last is not None:
    raise SpanError("give a span number or a number of latest spans, not both")
  if not spans:
    raise SpanError("there are no spans to select from")
  ordered = sorted(spans, key=lambda s: s.number)
  if span is not None:
    chosen = [s for s in ordered if s.number == span]
    if not chosen:
      raise SpanError(f"span {span} does not exist; the spans are "
                      f"{', '.join(str(s.number) for s in ordered)}")
    return chosen
  if last is not None:
    if last < 1:
      raise SpanError(f"the number of latest spans must be >= 1, got {last}")
    return ordered[-last:]
  return ordered[-1:]


# The layout of each span directory: the sample dataset's (data/sample_data.py),
# (annotations JSON, image folder) per split, relative to the span's directory.
SPLIT_LAYOUT = {"train": ("annotations/instances_train.json", "images/train"),
                "val": ("annotations/instances_val.json", "images/val")}


def resolve_span_dir(dir_pattern: str, span: Optional[int] = None
                     ) -> Tuple[int, str, List[int]]:
  """(the latest or the given span number, its directory, every span number found) of a
  directory pattern with {SPAN} whose directories are in SPLIT_LAYOUT (both splits)."""
  train_json, train_images = SPLIT_LAYOUT["train"]
  found = find_spans(_join(dir_pattern, train_json), _join(dir_pattern, train_images))
  [chosen] = select_spans(found, span=span)
  root = chosen.annotations[:-len(train_json) - 1]
  for relative in SPLIT_LAYOUT["val"]:
    if not fileio.exists(_join(root, relative)):
      raise SpanError(f"span {chosen.number}: {_join(root, relative)} does not exist")
  return chosen.number, root, [s.number for s in found]


def _join(directory: str, relative: str) -> str:
  """`directory`/`relative` with "/" (local paths and gs:// alike)."""
  return f"{directory.rstrip('/')}/{relative}"


def split_paths(span_dir: str) -> Dict[str, Tuple[str, str]]:
  """{split: (annotations JSON, image folder)} of a span directory."""
  return {split: tuple(_join(span_dir, p) for p in paths)
          for split, paths in SPLIT_LAYOUT.items()}
