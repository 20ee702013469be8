"""CocoExampleGen: COCO-format JSON + images -> sharded TFRecords (Beam).

A thin adapter around `data.convert`: it passes the pipeline's Beam pipeline
(DirectRunner locally, Dataflow with the usual Beam args) to the conversion and
records the per-split counts as MLMD custom properties.
"""

import json
import logging
import os
from typing import Any, Dict

import apache_beam as beam
import tensorflow as tf
from tfx.dsl.component.experimental.annotations import (BeamComponentParameter, OutputArtifact,
                                                        Parameter)
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components.artifacts import ConversionReport, LabelMap
from data import convert
from data import image_options
from data import spans
from retinanet import layout

SPLITS = ("train", "val")


def record_conversion_properties(examples, label_map, conversion_report, stats: Dict[str, Any],
                                 num_classes: int) -> None:
  """Copies the headline counts of the conversion stats onto MLMD custom properties."""
  for split, split_stats in stats["splits"].items():
    examples.set_int_custom_property(layout.ExamplesKeys.examples(split), int(split_stats["images_written"]))
    examples.set_int_custom_property(layout.ExamplesKeys.shards(split), int(split_stats["num_shards"]))
    for key in ("images_in", "images_written", "annotations_in", "boxes_written",
                "boxes_clipped", "crowd_boxes", "negative_images", "oriented_images",
                "image_size_mismatch"):
      conversion_report.set_int_custom_property(layout.ExamplesKeys.count(split, key), int(split_stats[key]))
    for reason, count in sorted(split_stats["images_skipped"].items()):
      conversion_report.set_int_custom_property(layout.ExamplesKeys.count(split, f"images_skipped_{reason}"), int(count))
    for reason, count in sorted(split_stats["annotations_dropped"].items()):
      conversion_report.set_int_custom_property(layout.ExamplesKeys.count(split, f"annotations_dropped_{reason}"), int(count))
  for artifact in (examples, label_map, conversion_report):
    artifact.set_int_custom_property(layout.ExamplesKeys.NUM_CLASSES, num_classes)


@component(use_beam=True)
def CocoExampleGen(  # pylint: disable=invalid-name
    examples: OutputArtifact[standard_artifacts.Examples],
    label_map: OutputArtifact[LabelMap],
    conversion_report: OutputArtifact[ConversionReport],
    train_annotations: Parameter[str],
    train_images: Parameter[str],
    val_annotations: Parameter[str],
    val_images: Parameter[str],
    num_shards: Parameter[int] = 0,
    size_mismatch: Parameter[str] = image_options.DEFAULT_SIZE_MISMATCH,
    convert_unsupported_images: Parameter[bool] = False,
    span: Parameter[int] = 0,
    span_pattern: Parameter[str] = "",
    code_version: Parameter[str] = "",
    beam_pipeline: BeamComponentParameter[beam.Pipeline] = None,
) -> None:
  """Converts a COCO-format train/val dataset into the `Examples` layout.

  Writes `Split-train/` and `Split-val/` GZIP TFRecord shards into the Examples
  artifact, `label_map.json` and `conversion_report.json` into the other two.
  `num_shards=0` picks the shard count from the data size. `size_mismatch`
  ("skip", "rescale" or "error") handles images whose JSON height/width is not
  their size as displayed; `convert_unsupported_images` stores WebP, TIFF, BMP
  and GIF as PNG instead of skipping them (data/convert.py). `span` is the data
  span the files are (pipeline/datasets.py), recorded as the Examples artifact's
  `span` property as TFX's ExampleGen does (0: not a span). `span_pattern` (a directory
  pattern with {SPAN}, data/spans.py) instead takes the latest span found when the
  component runs (what a scheduled Vertex run needs; the four paths are then ignored).
  `code_version` only keys the cache (see pipeline/code_version.py).
  """
  del code_version
  splits = {"train": (train_annotations, train_images), "val": (val_annotations, val_images)}
  if span_pattern:
    span, root, numbers = spans.resolve_span_dir(span_pattern)
    splits = spans.split_paths(root)
    logging.getLogger(__name__).info("Data span %d, the latest of spans %s", span,
                                     ", ".join(str(n) for n in numbers))
  result = convert.convert_coco(splits=splits, output_dir=examples.uri,
                                num_shards=num_shards or None, beam_pipeline=beam_pipeline,
                                size_mismatch=size_mismatch,
                                # Vertex passes a bool parameter as 0/1.
                                convert_unsupported_images=bool(convert_unsupported_images))
  tf.io.gfile.copy(result.label_map_path, os.path.join(label_map.uri, layout.LABEL_MAP_FILE),
                   overwrite=True)
  tf.io.gfile.copy(result.stats_path,
                   os.path.join(conversion_report.uri, layout.CONVERSION_REPORT_FILE),
                   overwrite=True)
  examples.split_names = json.dumps(list(SPLITS))
  examples.span = int(span)
  record_conversion_properties(examples, label_map, conversion_report, result.stats,
                               result.label_map.num_classes)
