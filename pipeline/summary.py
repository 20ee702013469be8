"""The end-of-run summary of `run_pipeline.py`: AP, blessing, pushed model, paths.

It reads the run's output files (the Evaluator's metrics.json and BLESSED /
NOT_BLESSED marker, the serving directory) rather than MLMD: while the
LocalDagRunner process that wrote a new sqlite store is alive, other
connections to that store did not yet see the run's artifacts (observed on
fresh stores), whereas the files are complete as soon as each stage ends.
"""
from __future__ import annotations

import glob
import json
import os
from typing import List, Optional


def _newest(pattern: str) -> Optional[str]:
  paths = glob.glob(pattern)
  return max(paths, key=os.path.getmtime) if paths else None


def summary_lines(*, pipeline_name: str, pipeline_root: str, serving_dir: str,
                  metadata_path: str, seconds: float, evaluator_id: str) -> List[str]:
  """Lines of the summary; the newest evaluation and blessing under `pipeline_root`."""
  from retinanet.serving import versioning  # pylint: disable=g-import-not-at-top
  lines = ["", "=" * 72, f"Pipeline '{pipeline_name}' finished in {seconds / 60:.1f} min"]
  metrics_path = _newest(os.path.join(pipeline_root, evaluator_id, "evaluation", "*",
                                      "metrics.json"))
  if metrics_path:
    with open(metrics_path) as f:
      m = json.load(f)
    lines.append(f"  COCO AP@[.5:.95] = {m['AP']:.3f}   AP50 = {m['AP50']:.3f}   "
                 f"AP75 = {m['AP75']:.3f}   ({metrics_path})")
  marker = _newest(os.path.join(pipeline_root, evaluator_id, "blessing", "*", "*BLESSED"))
  if marker:
    with open(marker) as f:
      reason = f.read().strip()
    blessed = os.path.basename(marker) == "BLESSED"
    lines.append(f"  Blessed: {'yes' if blessed else 'no'} ({reason})")
  latest = versioning.latest_version_dir(serving_dir)
  if latest:
    lines.append(f"  Pushed model (latest version): {latest}")
  lines += [f"  Artifacts: {pipeline_root}", f"  MLMD: {metadata_path}",
            f"  Lineage: python -m pipeline.lineage --metadata {metadata_path}", "=" * 72]
  return lines
