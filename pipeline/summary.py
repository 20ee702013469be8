"""The end-of-run summary of `run_pipeline.py`: this run's stages, AP, blessing, push.

Everything is read from MLMD through this run's `pipeline_run` context (the
run id the local runner chose), so a data-only run shows no AP, and a stage
that was cached, skipped (partial run) or failed says so. When nothing was
pushed, the Pusher's recorded reason is printed.
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence

from pipeline import metadata_queries as mq

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
  if stats is None or "coverage" not in stats.properties:
    return []
  p = stats.properties
  line = (f"  Anchor coverage: {p['coverage']:.1%} of {p.get('train_boxes', '?')} train boxes "
          f"reach a positive anchor (floor {p['min_coverage']:.0%})")
  if p.get("coverage_ok") == 0 and "suggested_anchor_size" in p:
    line += (f"; suggested anchor_size={p['suggested_anchor_size']:g} aspect_ratios="
             f"{p['suggested_aspect_ratios']} reaches {p['suggested_coverage']:.1%}")
  lines = [line]
  if p.get("num_anomalies"):
    lines.append(f"  Train/val anomalies: {p['num_anomalies']} ({stats.uri}/report.json)")
  return lines


def result_lines(runs: Mapping[str, mq.NodeRun], evaluator: str, pusher: str) -> List[str]:
  """AP / blessing / push lines from the Evaluator's and Pusher's outputs in this run."""
  lines = []
  evaluation = runs.get(evaluator)
  if evaluation is not None:
    [metrics] = evaluation.outputs.get("ModelEvaluation", [None])
    if metrics is not None and "AP" in metrics.properties:
      p = metrics.properties
      lines.append(f"  COCO AP@[.5:.95] = {p['AP']:.3f}   AP50 = {p['AP50']:.3f}   "
                   f"AP75 = {p['AP75']:.3f}   ({metrics.uri}/metrics.json)")
      if p.get("report"):
        lines.append(f"  Evaluation report: {p['report']}")
    [blessing] = evaluation.outputs.get("ModelBlessing", [None])
    if blessing is not None:
      blessed = blessing.properties.get("blessed") == 1
      lines.append(f"  Blessed: {'yes' if blessed else 'no'} "
                   f"({blessing.properties.get('reason', '')})")
  push = runs.get(pusher)
  if push is not None:
    [pushed] = push.outputs.get("PushedModel", [None])
    if pushed is not None and pushed.properties.get("pushed") == 1:
      lines.append(f"  Pushed model: {pushed.properties['pushed_destination']}")
    elif pushed is not None:
      lines.append(f"  Not pushed: {pushed.properties.get('reason', 'no reason recorded')}")
  if not lines:
    lines.append("  No model was evaluated or pushed in this run.")
  return lines


def summary_lines(*, pipeline_name: str, run_id: str, stages: Sequence[str], evaluator: str,
                  pusher: str, pipeline_root: str, metadata_path: str, seconds: float,
                  error: Optional[str] = None, statistics: str = "") -> List[str]:
  """Lines of the summary of run `run_id` (read from the MLMD store at `metadata_path`)."""
  store = mq.open_store(metadata_path)
  runs = mq.run_executions(store, run_id)
  verb = "failed" if error else "finished"
  lines = ["", "=" * 72, f"Pipeline '{pipeline_name}' run {run_id} {verb} in "
           f"{seconds / 60:.1f} min"]
  if error:
    lines.append(f"  Error: {error}")
  lines += [stage_line(node, runs.get(node)) for node in stages]
  lines += coverage_lines(runs, statistics) if statistics else []
  lines += result_lines(runs, evaluator, pusher)
  lines += [f"  Artifacts: {pipeline_root}", f"  MLMD: {metadata_path}",
            f"  Lineage: python -m pipeline.lineage --metadata {metadata_path}", "=" * 72]
  return lines
