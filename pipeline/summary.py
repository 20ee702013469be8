"""The end-of-run summary of `run_pipeline.py`: this run's stages, AP, blessing, push.

Everything is read from MLMD through this run's `pipeline_run` context (the
run id the local runner chose), so a data-only run shows no AP, and a stage
that was cached, skipped (partial run) or failed says so. When nothing was
pushed, the Pusher's recorded reason is printed.
"""
from __future__ import annotations

from typing import List, Mapping, Optional

from pipeline import metadata_queries as mq
from pipeline import stages
from retinanet import layout

STATE_WORDS = {"COMPLETE": "ran", "CACHED": "cached (reused)", "FAILED": "FAILED",
               "RUNNING": "did not finish", "NEW": "did not start", "CANCELED": "canceled"}


def stage_line(node: str, run: Optional[mq.NodeRun]) -> str:
  word = "not run in this run" if run is None else STATE_WORDS.get(run.state, run.state.lower())
  return f"  {node:<20} {word}"


def coverage_lines(runs: Mapping[str, mq.NodeRun], statistics: str) -> List[str]:
  """The anchor coverage line of the statistics stage's output in this run (if it ran)."""
  run = runs.get(statistics)
  # components.artifacts.BoxStatistics.TYPE_NAME (not imported: it would load TFX here).
  [stats] = (run.outputs.get("components.BoxStatistics", [None]) if run is not None else [None])
  keys = layout.BoxStatisticsKeys
  if stats is None or keys.COVERAGE not in stats.properties:
    return []
  p = stats.properties
  line = (f"  Anchor coverage: {p[keys.COVERAGE]:.1%} of {p.get(keys.boxes('train'), '?')} train "
          f"boxes reach a positive anchor (floor {p[keys.MIN_COVERAGE]:.0%})")
  if p.get(keys.COVERAGE_OK) == 0 and keys.SUGGESTED_ANCHOR_SIZE in p:
    line += (f"; suggested anchor_size={p[keys.SUGGESTED_ANCHOR_SIZE]:g} aspect_ratios="
             f"{p[keys.SUGGESTED_ASPECT_RATIOS]} reaches {p[keys.SUGGESTED_COVERAGE]:.1%}")
  lines = [line]
  if p.get(keys.NUM_ANOMALIES):
    lines.append(f"  Train/val anomalies: {p[keys.NUM_ANOMALIES]} "
                 f"({stats.uri}/{layout.BOX_STATISTICS_REPORT_FILE})")
  return lines


def validation_lines(runs: Mapping[str, mq.NodeRun], validator: str) -> List[str]:
  """The data-validation verdict of this run's span (continuous training only)."""
  run = runs.get(validator)
  [anomalies] = run.outputs.get("ExampleAnomalies", [None]) if run is not None else [None]
  if anomalies is None:
    return []
  keys, p = layout.ValidationKeys, anomalies.properties
  span = p.get(keys.SPAN, "?")
  if p.get(keys.BLOCKING) == 1:
    return [f"  Data validation: REFUSED span {span}: {p.get(keys.MESSAGE, '')}"]
  kinds = p.get(keys.ANOMALY_KINDS) or ""
  if kinds:
    return [f"  Data validation: span {span} has {kinds}, accepted ({anomalies.uri})"]
  return [f"  Data validation: span {span} matches the schema"]


def _evaluation_lines(run: mq.NodeRun) -> List[str]:
  lines = []
  [metrics] = run.outputs.get("ModelEvaluation", [None])
  if metrics is not None and layout.EvaluationKeys.AP in metrics.properties:
    p = metrics.properties
    lines.append(f"  COCO AP@[.5:.95] = {p['AP']:.3f}   AP50 = {p['AP50']:.3f}   "
                 f"AP75 = {p['AP75']:.3f}   ({metrics.uri}/{layout.METRICS_FILE})")
    if layout.EvaluationKeys.HELD_OUT_AP in p:
      baseline = p.get(layout.EvaluationKeys.BASELINE_HELD_OUT_AP)
      lines.append(f"  Held-out (first span) AP = {p[layout.EvaluationKeys.HELD_OUT_AP]:.3f}"
                   + ("" if baseline is None else f"   baseline {baseline:.3f}"))
    if p.get(layout.EvaluationKeys.REPORT):
      lines.append(f"  Evaluation report: {p[layout.EvaluationKeys.REPORT]}")
  [blessing] = run.outputs.get("ModelBlessing", [None])
  if blessing is not None:
    blessed = blessing.properties.get(layout.BlessingKeys.BLESSED) == 1
    lines.append(f"  Blessed: {'yes' if blessed else 'no'} "
                 f"({blessing.properties.get(layout.BlessingKeys.REASON, '')})")
  return lines


def _push_lines(run: mq.NodeRun) -> List[str]:
  [pushed] = run.outputs.get("PushedModel", [None])
  if pushed is None:
    return []
  if pushed.properties.get(layout.PushKeys.PUSHED) == 1:
    return [f"  Pushed model: {pushed.properties[layout.PushKeys.DESTINATION]}"]
  return [f"  Not pushed: {pushed.properties.get(layout.PushKeys.REASON, 'no reason recorded')}"]


def result_lines(runs: Mapping[str, mq.NodeRun], evaluator: str, pusher: str) -> List[str]:
  """AP / blessing / push lines from the Evaluator's and Pusher's outputs in this run."""
  lines = []
  if runs.get(evaluator) is not None:
    lines += _evaluation_lines(runs[evaluator])
  if runs.get(pusher) is not None:
    lines += _push_lines(runs[pusher])
  return lines or ["  No model was evaluated or pushed in this run."]


def summary_lines(*, pipeline_name: str, run_id: str, pipeline_root: str, metadata_path: str,
                  seconds: float, error: Optional[str] = None) -> List[str]:
  """Lines of the summary of run `run_id` (read from the MLMD store at `metadata_path`)."""
  store = mq.open_store(metadata_path)
  runs = mq.run_executions(store, run_id)
  verb = "failed" if error else "finished"
  lines = ["", "=" * 72, f"Pipeline '{pipeline_name}' run {run_id} {verb} in "
           f"{seconds / 60:.1f} min"]
  if error:
    lines.append(f"  Error: {error}")
  shown = [s for s in (*stages.STAGES[:2], *stages.CONTINUOUS_STAGES, *stages.STAGES[2:])
           if s in stages.STAGES or s.node_id in runs]
  lines += [stage_line(stage.node_id, runs.get(stage.node_id)) for stage in shown]
  lines += coverage_lines(runs, stages.STATISTICS.node_id)
  lines += validation_lines(runs, stages.VALIDATION.node_id)
  lines += result_lines(runs, stages.EVALUATOR.node_id, stages.PUSHER.node_id)
  lines += [f"  Artifacts: {pipeline_root}", f"  MLMD: {metadata_path}",
            f"  Lineage: python -m pipeline.lineage --metadata {metadata_path}", "=" * 72]
  return lines
