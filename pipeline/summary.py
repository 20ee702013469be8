"""The end-of-run summary of `run_pipeline.py`, read from MLMD (run as its own process).

    python -m pipeline.summary --metadata runs/local/metadata.sqlite --pipeline_name retinanet
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence

from pipeline import metadata_queries


def summary_lines(store, pipeline_name: str, pipeline_root: str, metadata_path: str,
                  seconds: float) -> List[str]:
  """Pushed model, AP, blessing, time and paths of the latest run, as lines of text."""
  evaluations = metadata_queries.artifacts_of_type(store, "ModelEvaluation")
  blessings = metadata_queries.artifacts_of_type(store, "ModelBlessing")
  pushed = metadata_queries.latest_pushed_model(store, pipeline_name)
  lines = ["", "=" * 72, f"Pipeline '{pipeline_name}' finished in {seconds / 60:.1f} min"]
  if evaluations:
    props = metadata_queries.custom_properties(max(evaluations, key=lambda a: a.id))
    if "AP" in props:
      lines.append(f"  COCO AP@[.5:.95] = {props['AP']:.3f}   AP50 = {props.get('AP50', 0):.3f}"
                   f"   AP75 = {props.get('AP75', 0):.3f}   ({props.get('split', 'val')} split)")
  if blessings:
    props = metadata_queries.custom_properties(max(blessings, key=lambda a: a.id))
    lines.append(f"  Blessed: {'yes' if props.get('blessed') == 1 else 'no'} "
                 f"({props.get('reason', '')})")
  if pushed is not None:
    destination = metadata_queries.custom_properties(pushed)["pushed_destination"]
    lines.append(f"  Pushed model: {destination}")
  lines += [f"  Artifacts: {pipeline_root}", f"  MLMD: {metadata_path}",
            f"  Lineage: python -m pipeline.lineage --metadata {metadata_path}", "=" * 72]
  return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--metadata", required=True)
  parser.add_argument("--pipeline_name", required=True)
  parser.add_argument("--pipeline_root", default="")
  parser.add_argument("--seconds", type=float, default=0.0)
  args = parser.parse_args(argv)
  store = metadata_queries.open_store(args.metadata)
  print("\n".join(summary_lines(store, args.pipeline_name, args.pipeline_root, args.metadata,
                                args.seconds)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
