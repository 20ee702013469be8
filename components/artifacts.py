"""Custom artifact types of the pipeline.

Vertex's compiler needs TYPE_NAME to equal the importable class path
(`package.ClassName`, see shared TFX notes) and no PROPERTIES: values go in
custom properties instead. Both classes are re-exported by `components`.
"""
import logging
import os
from typing import Optional

import tensorflow as tf
from tfx.types import artifact_utils
from tfx.types.artifact import Artifact


class LabelMap(Artifact):
  """`label_map.json`: contiguous class index <-> original category id and name."""
  TYPE_NAME = "components.LabelMap"


class ConversionReport(Artifact):
  """The data stage's `conversion_report.json`: per-split counts that reconcile
  (read = written + skipped, with reasons). Not to be confused with BoxStatistics."""
  TYPE_NAME = "components.ConversionReport"


class BoxStatistics(Artifact):
  """The dataset statistics stage's `report.json`, its plots and tensorflow-transform graph:
  box sizes at the model input scale, anchor coverage and suggestion, drift anomalies."""
  TYPE_NAME = "components.BoxStatistics"


# A Model artifact is a trained-model directory: see retinanet/model_dir.py.
# A ModelRun holds the TensorBoard logs under <uri>/tensorboard/.


def examples_span(examples: Artifact) -> int:
  """The data span of an Examples artifact (TFX's `span` property); 0 when it has none."""
  return int(examples.span or 0) if examples.has_property("span") else 0


def examples_file_pattern(examples: Artifact, split: str) -> str:
  """The TFRecord glob of one split of an Examples artifact (`<uri>/Split-<split>/*`)."""
  return os.path.join(artifact_utils.get_split_uri([examples], split), "*")


def examples_ground_truth_path(examples: Artifact, split: str) -> Optional[str]:
  """The split's COCO ground-truth JSON written by CocoExampleGen, or None (with a
  warning) for Examples without one: evaluation then reads the records."""
  from data import convert  # pylint: disable=g-import-not-at-top
  path = convert.ground_truth_path(examples.uri, split)
  if tf.io.gfile.exists(path):
    return path
  logging.getLogger(__name__).warning(
      "%s has no ground-truth file %s: evaluating against the records (converted boxes, at "
      "most input.max_instances objects per image)", examples.uri, path)
  return None
