"""What training does with the statistics stage's anchor coverage (config.anchor_fit).

The statistics stage (data/box_statistics.py) writes a report with the anchor
coverage of the training boxes and, when it is low, a suggested layout. Before a
fresh training, `apply_anchor_fit` decides per `config.anchor_fit.policy`: train
with the anchors as configured ("log"), stop ("fail"), or train with the
suggestion ("adopt"); the decision is written into the config it returns.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

from retinanet import config as config_lib
from retinanet import factory


class AnchorCoverageError(RuntimeError):
  """Anchor coverage is below config.anchor_fit.min_coverage with policy "fail"."""


def coverage_line(report: Mapping[str, Any]) -> str:
  """One line of a statistics report for logs and the run summary: coverage, floor and the
  suggestion."""
  coverage = report.get("coverage")
  if coverage is None:
    return "anchor coverage: no training boxes"
  train = report["splits"]["train"]["coverage"]
  line = (f"anchor coverage {coverage:.1%} of {report['splits']['train']['num_boxes']} train "
          f"boxes have an anchor at IoU >= {report['matcher']['positive_iou']} "
          f"({train['ignored_only']:.1%} ignored only, {train['background']:.1%} background only; "
          f"floor {report['min_coverage']:.0%})")
  suggestion = report.get("suggestion")
  if not report["coverage_ok"] and suggestion and suggestion["changes_layout"]:
    line += (f"; suggested anchor_size {suggestion['anchor_size']:g}, aspect_ratios "
             f"{suggestion['aspect_ratios']} would reach "
             f"{suggestion['coverage_on_sample']['positive']:.1%}")
  return line


def _adopt(model: config_lib.ModelConfig, suggestion: Mapping[str, Any]) -> config_lib.ModelConfig:
  anchors = dataclasses.replace(
      model.anchors, anchor_size=float(suggestion["anchor_size"]),
      scales_per_octave=int(suggestion["scales_per_octave"]),
      aspect_ratios=tuple(float(r) for r in suggestion["aspect_ratios"]))
  return dataclasses.replace(model, anchors=anchors)


def _decide(config: config_lib.ExperimentConfig, report: Optional[Mapping[str, Any]],
            source: str):
  """(model config to train with, decision text); raises AnchorCoverageError for "fail"."""
  fit, model = config.anchor_fit, config.model
  if report is None:
    return model, "no dataset statistics: anchors as configured"
  if report["anchors"] != factory.build_anchors(model).layout_json():
    return model, (f"dataset statistics {source} were computed for other anchors "
                   f"({report['anchors']}): anchors as configured")
  if report["coverage"] is None:
    return model, "no training boxes in the dataset statistics: anchors as configured"
  if report["coverage"] >= fit.min_coverage:
    return model, (f"coverage {report['coverage']:.1%} >= floor {fit.min_coverage:.0%}: "
                   "anchors as configured")
  suggestion = report.get("suggestion") or {}
  if fit.policy == "fail":
    raise AnchorCoverageError(
        f"{coverage_line(report)}. Stopping before training (anchor_fit.policy=fail, statistics "
        f"in {source}): set model.anchors from the suggestion, or anchor_fit.policy=adopt to "
        "train with it, or anchor_fit.policy=log to train anyway")
  if fit.policy == "adopt" and suggestion.get("changes_layout"):
    adopted = _adopt(model, suggestion)
    return adopted, (
        f"adopted the suggested anchors: anchor_size {model.anchors.anchor_size:g} -> "
        f"{adopted.anchors.anchor_size:g}, aspect_ratios {list(model.anchors.aspect_ratios)} -> "
        f"{list(adopted.anchors.aspect_ratios)}; coverage "
        f"{suggestion['current_coverage_on_sample']['positive']:.1%} -> "
        f"{suggestion['coverage_on_sample']['positive']:.1%} on {suggestion['sample_boxes']} "
        f"sampled train boxes (statistics: {source})")
  return model, (f"coverage {report['coverage']:.1%} < floor {fit.min_coverage:.0%}, trained "
                 f"with the anchors as configured (anchor_fit.policy={fit.policy})")


def apply_anchor_fit(config: config_lib.ExperimentConfig, report: Optional[Mapping[str, Any]],
                     source: str = "") -> config_lib.ExperimentConfig:
  """The config to train with: per `config.anchor_fit.policy`, the configured anchors or the
  statistics stage's suggestion, with what was done written into `anchor_fit.decision`.

  Raises AnchorCoverageError when coverage is below the floor and the policy is "fail".
  """
  model, decision = _decide(config, report, source)
  result = dataclasses.replace(config, model=model,
                               anchor_fit=dataclasses.replace(config.anchor_fit, decision=decision))
  config_lib.validate(result)
  return result
