"""Runs the pipeline in-process with LocalDagRunner and a sqlite MLMD store."""
from __future__ import annotations

import logging
from typing import Optional, Sequence

from tfx import v1 as tfx
from tfx.orchestration import pipeline as pipeline_lib

logger = logging.getLogger(__name__)


def metadata_config(sqlite_path: str):
  return tfx.orchestration.metadata.sqlite_metadata_connection_config(sqlite_path)


def run_local(pipeline: tfx.dsl.Pipeline,
              from_nodes: Optional[Sequence[str]] = None,
              to_nodes: Optional[Sequence[str]] = None) -> None:
  """Runs `pipeline`, or only the nodes between `from_nodes` and `to_nodes`.

  A partial run takes the artifacts of the skipped upstream nodes from the
  previous run recorded in MLMD (TFX RunOptions); nothing upstream reruns.
  """
  run_options = None
  if from_nodes or to_nodes:
    run_options = pipeline_lib.RunOptions(from_nodes=list(from_nodes or []) or None,
                                          to_nodes=list(to_nodes or []) or None)
    logger.info("Partial run: from %s to %s", from_nodes or "start", to_nodes or "end")
  tfx.orchestration.LocalDagRunner().run(pipeline, run_options=run_options)
