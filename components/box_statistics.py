"""BoxStatisticsGen: dataset statistics and anchor fit of the converted Examples (Beam + TFT).

A thin adapter around `data.box_statistics`: it runs the tensorflow-transform
analyzers in the pipeline's Beam pipeline (DirectRunner locally, Dataflow
with the usual Beam args), writes `report.json`, the plots and the transform
graphs into the BoxStatistics artifact, and records the headline numbers as
MLMD custom properties.
"""
import dataclasses
import json
import logging
import os
from typing import Any, Mapping

import apache_beam as beam
from tfx.dsl.component.experimental.annotations import (BeamComponentParameter, InputArtifact,
                                                        OutputArtifact, Parameter)
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components.artifacts import BoxStatistics, LabelMap, examples_file_pattern
from data import box_statistics
from retinanet import coco
from retinanet import config as config_lib
from retinanet import factory
from retinanet import layout
from retinanet.training import anchor_policy

logger = logging.getLogger(__name__)

SPLITS = ("train", "val")


def record_report_properties(artifact, report: Mapping[str, Any]) -> None:
  """Headline numbers of the report as custom properties (MLMD, lineage, the run summary)."""
  if report["coverage"] is not None:
    artifact.set_float_custom_property(layout.BoxStatisticsKeys.COVERAGE, float(report["coverage"]))
  artifact.set_float_custom_property(layout.BoxStatisticsKeys.MIN_COVERAGE, float(report["min_coverage"]))
  artifact.set_int_custom_property(layout.BoxStatisticsKeys.COVERAGE_OK, int(bool(report["coverage_ok"])))
  artifact.set_int_custom_property(layout.BoxStatisticsKeys.NUM_ANOMALIES, len(report["anomalies"]))
  for split, summary in report["splits"].items():
    artifact.set_int_custom_property(layout.BoxStatisticsKeys.boxes(split), int(summary["num_boxes"]))
    artifact.set_float_custom_property(layout.BoxStatisticsKeys.split_coverage(split),
                                       float(summary["coverage"]["positive"]))
  suggestion = report.get("suggestion")
  if suggestion and suggestion["changes_layout"]:
    artifact.set_float_custom_property(layout.BoxStatisticsKeys.SUGGESTED_ANCHOR_SIZE, float(suggestion["anchor_size"]))
    artifact.set_string_custom_property(layout.BoxStatisticsKeys.SUGGESTED_ASPECT_RATIOS,
                                        json.dumps(suggestion["aspect_ratios"]))
    artifact.set_float_custom_property(layout.BoxStatisticsKeys.SUGGESTED_COVERAGE,
                                       float(suggestion["coverage_on_sample"]["positive"]))


def statistics_config_json(config: config_lib.ExperimentConfig) -> str:
  """The part of `config` the statistics depend on, as BoxStatisticsGen's `config_json`: the
  model (input size, anchors, matcher; with the loss, validated together with the box
  coder), input.max_instances and the coverage floor; the rest at its defaults. A change
  of the optimizer or the training length then finds the statistics in the cache instead
  of running the analyzers again."""
  default = config_lib.ExperimentConfig()
  return config_lib.config_to_json(dataclasses.replace(
      default, model=config.model, loss=config.loss,
      input=dataclasses.replace(default.input, max_instances=config.input.max_instances),
      anchor_fit=dataclasses.replace(default.anchor_fit,
                                     min_coverage=config.anchor_fit.min_coverage)))


@component(use_beam=True)
def BoxStatisticsGen(  # pylint: disable=invalid-name
    examples: InputArtifact[standard_artifacts.Examples],
    label_map: InputArtifact[LabelMap],
    statistics: OutputArtifact[BoxStatistics],
    config_json: Parameter[str],
    code_version: Parameter[str] = "",
    beam_pipeline: BeamComponentParameter[beam.Pipeline] = None,
) -> None:
  """Box statistics at the model input scale of `config_json` (`statistics_config_json`),
  anchor coverage, drift.

  `code_version` only keys the cache (see pipeline/code_version.py).
  """
  del code_version
  config = config_lib.config_from_dict(json.loads(config_json))
  labels = coco.load_label_map(os.path.join(label_map.uri, layout.LABEL_MAP_FILE))
  spec = box_statistics.AnalysisSpec(
      anchors=factory.build_anchors(config.model), positive_iou=config.model.matcher.positive_iou,
      negative_iou=config.model.matcher.negative_iou, num_classes=labels.num_classes,
      max_instances=config.input.max_instances)
  report = box_statistics.run_statistics(
      file_patterns={split: examples_file_pattern(examples, split) for split in SPLITS},
      spec=spec, output_dir=statistics.uri, class_names=[e.name for e in labels.entries],
      min_coverage=config.anchor_fit.min_coverage, beam_pipeline=beam_pipeline)
  log = logger.info if report["coverage_ok"] else logger.warning
  log("Dataset statistics: %s", anchor_policy.coverage_line(report))
  for anomaly in report["anomalies"]:
    logger.warning("Train/val anomaly: %s", anomaly["message"])
  record_report_properties(statistics, report)
