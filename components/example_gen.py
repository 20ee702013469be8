"""CocoExampleGen: COCO-format JSON + images -> sharded TFRecords (Beam).

A thin adapter around `data.convert`: it passes the pipeline's Beam pipeline
(DirectRunner locally, Dataflow with the usual Beam args) to the conversion and
records the per-split counts as MLMD custom properties.
"""

import json
import os
from typing import Any, Dict

import apache_beam as beam
import tensorflow as tf
from tfx.dsl.component.experimental.annotations import (BeamComponentParameter, OutputArtifact,
                                                        Parameter)
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components.artifacts import LABEL_MAP_FILE, STATISTICS_FILE, DatasetStatistics, LabelMap
from data import convert

SPLITS = ("train", "val")


def record_statistics_properties(artifacts: Dict[str, Any], stats: Dict[str, Any]) -> None:
  """Copies the headline counts of `stats` onto the output artifacts' custom properties."""
  examples, label_map, statistics = (artifacts["examples"], artifacts["label_map"],
                                     artifacts["statistics"])
  for split, split_stats in stats["splits"].items():
    examples.set_int_custom_property(f"{split}_examples", int(split_stats["images_written"]))
    examples.set_int_custom_property(f"{split}_shards", int(split_stats["shards"]))
    statistics.set_int_custom_property(f"{split}_images_in", int(split_stats["images_in"]))
    statistics.set_int_custom_property(f"{split}_images_written",
                                       int(split_stats["images_written"]))
    for reason, count in sorted(split_stats["images_skipped"].items()):
      statistics.set_int_custom_property(f"{split}_skipped_{reason}", int(count))
    statistics.set_int_custom_property(f"{split}_boxes_written", int(split_stats["boxes_written"]))
  label_map.set_int_custom_property("num_classes", int(stats["num_classes"]))
  examples.set_int_custom_property("num_classes", int(stats["num_classes"]))


@component(use_beam=True)
def CocoExampleGen(  # pylint: disable=invalid-name
    examples: OutputArtifact[standard_artifacts.Examples],
    label_map: OutputArtifact[LabelMap],
    statistics: OutputArtifact[DatasetStatistics],
    train_annotations: Parameter[str],
    train_images: Parameter[str],
    val_annotations: Parameter[str],
    val_images: Parameter[str],
    num_shards: Parameter[int] = 0,
    code_version: Parameter[str] = "",
    beam_pipeline: BeamComponentParameter[beam.Pipeline] = None,
) -> None:
  """Converts a COCO-format train/val dataset into the `Examples` layout.

  Writes `Split-train/` and `Split-val/` GZIP TFRecord shards into the Examples
  artifact, `label_map.json` and `statistics.json` into the other two.
  `num_shards=0` picks the shard count from the data size. `code_version` only
  keys the cache (see pipeline/code_version.py).
  """
  del code_version
  splits = {"train": (train_annotations, train_images), "val": (val_annotations, val_images)}
  stats = convert.convert_coco(
      splits=splits,
      output_dir=examples.uri,
      label_map_path=os.path.join(label_map.uri, LABEL_MAP_FILE),
      statistics_path=os.path.join(statistics.uri, STATISTICS_FILE),
      num_shards=num_shards or None,
      beam_pipeline=beam_pipeline,
  )
  examples.split_names = json.dumps(list(SPLITS))
  record_statistics_properties(
      {"examples": examples, "label_map": label_map, "statistics": statistics}, stats)


def read_label_map_json(label_map_artifact_uri: str) -> str:
  """Returns the path of the label map file inside a LabelMap artifact."""
  path = os.path.join(label_map_artifact_uri, LABEL_MAP_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"label map artifact {label_map_artifact_uri} has no {LABEL_MAP_FILE}")
  return path
