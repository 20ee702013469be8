"""RetinaNetEvaluator: COCO mAP of the served model and a blessing.

The model is evaluated as it will be served: its SavedModel (the Model
artifact's `Format-Serving/`), called through the `serve_encoded_with_id`
signature on the split's original image bytes, scored with pycocotools
against the data stage's ground-truth JSON. With `postprocess_overrides`
(other NMS settings) a SavedModel with those settings is exported from the
checkpoint into this evaluation's artifact and evaluated instead.

Blessed when AP (IoU 0.50:0.95) >= `min_ap` and, if a previously blessed
model of this pipeline exists (the `baseline_model` input, resolved from MLMD
by the latest-blessed-model resolver), the new AP is not worse than the baseline's AP
on the same split, with the same post-processing, by more than
`max_ap_regression`. The blessing records exactly what was evaluated (model
artifact id, SavedModel path and content digest, post-processing): the Pusher
pushes those bytes and nothing else. The Pusher's pre-push validation of the
same bytes (a fresh process loads them and answers a canned batch on every
signature) runs beside the evaluation; a blessed model's report is recorded with
the digest it ran on, an unblessed model's is stopped.

Every run also writes `report.html` (retinanet/evaluation/report.py: metrics
against the baseline, per-class AP, PR curves, sizes, sample images, the
blessing) into the ModelEvaluation artifact; its path is the `report` property.
"""

import json
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components.artifacts import (examples_file_pattern, examples_ground_truth_path,
                                  examples_span)
from retinanet import layout
from retinanet.evaluation import blessing as blessing_lib

logger = logging.getLogger(__name__)

# Where a SavedModel with overridden post-processing is exported (evaluation artifact).
BASELINE_EXPORT_DIR = "baseline_export"
# Continuous training: per-class AP of the model and the baseline on the held-out set.
HELD_OUT_PER_CLASS_AP_FILE = "held_out_per_class_ap.json"


def _record_evaluation(evaluation, result, split: str, ground_truth: Optional[str],
                       saved_model: str) -> None:
  """The metrics files and the headline numbers of the ModelEvaluation artifact."""
  from retinanet.evaluation import coco_metrics  # pylint: disable=g-import-not-at-top
  coco_metrics.write_metrics_json(os.path.join(evaluation.uri, layout.METRICS_FILE),
                                  result.metrics)
  coco_metrics.write_metrics_json(os.path.join(evaluation.uri, layout.PER_CLASS_AP_FILE),
                                  {"per_class": result.per_class_ap})
  coco_metrics.write_detections_json(os.path.join(evaluation.uri, layout.DETECTIONS_FILE),
                                     result.detections)
  with tf.io.gfile.GFile(os.path.join(evaluation.uri, layout.EVALUATION_SUMMARY_FILE), "w") as f:
    f.write(result.summary)
  for name in layout.EvaluationKeys.HEADLINE_METRICS:
    evaluation.set_float_custom_property(name, float(result.metrics[name]))
  evaluation.set_int_custom_property(layout.EvaluationKeys.NUM_IMAGES, int(result.num_images))
  evaluation.set_string_custom_property(layout.EvaluationKeys.SPLIT, split)
  evaluation.set_string_custom_property(layout.EvaluationKeys.GROUND_TRUTH,
                                        ground_truth or "records")
  evaluation.set_string_custom_property(layout.EvaluationKeys.SAVED_MODEL_DIR, saved_model)


def _record_blessing(blessing, decision: Dict[str, Any], model, baseline_model, ap: float,
                     saved_model: str, digest: str, postprocess_json: str) -> None:
  """What the Pusher checks (the evaluated bytes) and what LatestBlessedModelStrategy and the
  standard Pusher read; a BLESSED / NOT_BLESSED marker file."""
  keys = layout.BlessingKeys
  blessing.set_int_custom_property(keys.BLESSED, int(decision["blessed"]))
  blessing.set_string_custom_property(keys.CURRENT_MODEL, model.uri)
  blessing.set_int_custom_property(keys.CURRENT_MODEL_ID, model.id)
  blessing.set_string_custom_property(keys.REASON, decision["reason"])
  blessing.set_float_custom_property(keys.AP, ap)
  blessing.set_string_custom_property(keys.SAVED_MODEL_DIR, saved_model)
  blessing.set_string_custom_property(keys.SAVED_MODEL_DIGEST, digest)
  blessing.set_string_custom_property(keys.POSTPROCESS, postprocess_json)
  if baseline_model is not None:
    blessing.set_string_custom_property(keys.BASELINE_MODEL, baseline_model.uri)
    blessing.set_int_custom_property(keys.BASELINE_MODEL_ID, baseline_model.id)
  marker = keys.BLESSED_MARKER if decision["blessed"] else keys.NOT_BLESSED_MARKER
  with tf.io.gfile.GFile(os.path.join(blessing.uri, marker), "w") as f:
    f.write(decision["reason"] + "\n")


def _record_validation(blessing, validation, digest: str, blessed: bool) -> None:
  """Waits for the fresh-process validation of a blessed model's bytes and records its report
  with their digest (the Pusher reuses it); an unblessed model's is stopped: no push follows."""
  if not blessed:
    validation.cancel()
    return
  report = validation.report()
  blessing.set_string_custom_property(layout.BlessingKeys.VALIDATION,
                                      json.dumps(report, sort_keys=True))
  blessing.set_string_custom_property(layout.BlessingKeys.VALIDATED_DIGEST, digest)
  logger.info("Pre-push validation of %s in a fresh process: %s", validation.export_dir,
              "passed" if report["valid"] else f"FAILED: {report['error']}")


def _evaluate_baseline(baseline_model, model, overrides, scratch: str, evaluate, evaluation):
  """(AP, result, SavedModel dir) of the baseline model, exported into `scratch` when the
  post-processing differs; (None, None, None) without one."""
  from retinanet.serving import export  # pylint: disable=g-import-not-at-top
  if baseline_model is None or baseline_model.uri == model.uri:
    return None, None, None
  saved_model, postprocess = export.serving_model_for(baseline_model.uri, overrides, scratch)
  result = evaluate(saved_model, postprocess)
  ap = float(result.metrics["AP"])
  evaluation.set_float_custom_property(layout.EvaluationKeys.BASELINE_AP, ap)
  return ap, result, saved_model


def _evaluate_held_out(held_out_examples, split: str, saved_model: str,
                       baseline_saved_model: Optional[str], evaluation,
                       max_class_regression: float
                       ) -> Tuple[float, Optional[float], List[Dict[str, Any]]]:
  """(model AP, baseline AP or None, forgotten classes) on the held-out Examples, recorded
  on `evaluation` (MLMD keys, the per-class APs of both in HELD_OUT_PER_CLASS_AP_FILE)."""
  from retinanet.evaluation import coco_metrics  # pylint: disable=g-import-not-at-top
  from retinanet.evaluation import evaluate_model  # pylint: disable=g-import-not-at-top
  file_pattern = examples_file_pattern(held_out_examples, split)
  ground_truth = examples_ground_truth_path(held_out_examples, split)
  logger.info("Evaluating on the held-out set %s", file_pattern)
  results = {"model": evaluate_model.evaluate_saved_model(saved_model, file_pattern,
                                                          ground_truth_path=ground_truth)}
  if baseline_saved_model is not None:
    results["baseline"] = evaluate_model.evaluate_saved_model(
        baseline_saved_model, file_pattern, ground_truth_path=ground_truth)
  coco_metrics.write_metrics_json(
      os.path.join(evaluation.uri, HELD_OUT_PER_CLASS_AP_FILE),
      {"span": examples_span(held_out_examples), "split": split,
       **{name: r.per_class_ap for name, r in results.items()}})
  ap = float(results["model"].metrics["AP"])
  evaluation.set_float_custom_property(layout.EvaluationKeys.HELD_OUT_AP, ap)
  baseline_ap, forgotten = None, []
  if "baseline" in results:
    baseline_ap = float(results["baseline"].metrics["AP"])
    evaluation.set_float_custom_property(layout.EvaluationKeys.BASELINE_HELD_OUT_AP, baseline_ap)
    forgotten = blessing_lib.forgotten_classes(results["model"].per_class_ap,
                                               results["baseline"].per_class_ap,
                                               max_class_regression)
  return ap, baseline_ap, forgotten


def _with_baseline(ap: float, baseline_ap: Optional[float]) -> str:
  return f"{ap:.4f}" + ("" if baseline_ap is None else f" (baseline {baseline_ap:.4f})")


@component
def RetinaNetEvaluator(  # pylint: disable=invalid-name
    model: InputArtifact[standard_artifacts.Model],
    examples: InputArtifact[standard_artifacts.Examples],
    evaluation: OutputArtifact[standard_artifacts.ModelEvaluation],
    blessing: OutputArtifact[standard_artifacts.ModelBlessing],
    baseline_model: InputArtifact[standard_artifacts.Model] = None,
    held_out_examples: InputArtifact[standard_artifacts.Examples] = None,
    split: Parameter[str] = "val",
    min_ap: Parameter[float] = blessing_lib.DEFAULT_THRESHOLDS.min_ap,
    max_ap_regression: Parameter[float] = blessing_lib.DEFAULT_THRESHOLDS.max_ap_regression,
    postprocess_overrides: Parameter[str] = "{}",
    max_held_out_regression: Parameter[float] = blessing_lib.DEFAULT_THRESHOLDS.max_ap_regression,
    max_class_regression: Parameter[float] = blessing_lib.DEFAULT_MAX_CLASS_REGRESSION,
    code_version: Parameter[str] = "",
) -> None:
  """Evaluates the SavedModel of `model` on `split` with pycocotools and blesses it or not.

  `held_out_examples` (continuous training: the first span's Examples, when they are not
  `examples`) is a second, fixed evaluation set: the model and the baseline are scored on
  its `split` too, and the blessing also refuses an AP drop there beyond
  `max_held_out_regression`, or a class whose AP there drops beyond `max_class_regression`
  (forgetting, blessing.decide_with_held_out).

  `postprocess_overrides` (JSON, e.g. {"nms_mode": "global_soft"}) evaluates
  (and, if blessed, lets the Pusher push) a SavedModel with other NMS settings
  without retraining.
  """
  del code_version
  from retinanet.evaluation import evaluate_model  # pylint: disable=g-import-not-at-top
  from retinanet.serving import export, validate  # pylint: disable=g-import-not-at-top

  overrides = json.loads(postprocess_overrides or "{}")
  file_pattern = examples_file_pattern(examples, split)
  ground_truth = examples_ground_truth_path(examples, split)

  def evaluate(saved_model: str, postprocess) -> Any:
    logger.info("Evaluating the SavedModel %s (nms_mode=%s)", saved_model, postprocess.nms_mode)
    return evaluate_model.evaluate_saved_model(saved_model, file_pattern,
                                               ground_truth_path=ground_truth)

  saved_model, postprocess = export.serving_model_for(
      model.uri, overrides, os.path.join(evaluation.uri, layout.SERVING_MODEL_DIR))
  digest = validate.saved_model_digest(saved_model)  # of the bytes about to be evaluated
  validation = validate.start_in_fresh_process(saved_model)  # the Pusher's, run beside ours
  try:
    result = evaluate(saved_model, postprocess)
    _record_evaluation(evaluation, result, split, ground_truth, saved_model)
    scratch = os.path.join(evaluation.uri, BASELINE_EXPORT_DIR)
    baseline_ap, baseline, baseline_saved_model = _evaluate_baseline(
        baseline_model, model, overrides, scratch, evaluate, evaluation)
    decision = blessing_lib.decide_blessing(float(result.metrics["AP"]), min_ap, baseline_ap,
                                            max_ap_regression)
    held_out_rows = []
    if held_out_examples is not None and held_out_examples.uri != examples.uri:
      ap, baseline_ap, forgotten = _evaluate_held_out(
          held_out_examples, split, saved_model, baseline_saved_model, evaluation,
          max_class_regression)
      decision = blessing_lib.decide_with_held_out(decision, ap, baseline_ap,
                                                   max_held_out_regression, forgotten)
      held_out_rows = [(f"held-out AP (span {examples_span(held_out_examples)} {split})",
                        _with_baseline(ap, baseline_ap))]
    if tf.io.gfile.exists(scratch):
      tf.io.gfile.rmtree(scratch)
    logger.info("Blessing: %s (%s)", decision["blessed"], decision["reason"])
    details = [("model", model.uri), ("SavedModel", saved_model),
               ("post-processing", export.postprocess_json(postprocess)),
               ("baseline model", baseline_model.uri if baseline is not None else "none"),
               *held_out_rows, ("images", str(result.num_images)),
               ("ground truth", ground_truth or "the records")]
    report = evaluate_model.write_report(
        os.path.join(evaluation.uri, layout.REPORT_FILE), result,
        title=f"Evaluation of model {model.id} on the {split} split", file_pattern=file_pattern,
        ground_truth_path=ground_truth, blessing=decision, baseline=baseline, details=details)
    evaluation.set_string_custom_property(layout.EvaluationKeys.REPORT, report)
    _record_blessing(blessing, decision, model, baseline_model, float(result.metrics["AP"]),
                     saved_model, digest, export.postprocess_json(postprocess))
    _record_validation(blessing, validation, digest, decision["blessed"])
  except BaseException:
    validation.cancel()
    raise
