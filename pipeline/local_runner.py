"""Runs the pipeline in-process with LocalDagRunner and a sqlite MLMD store.

The run id (the name of the run's `pipeline_run` context in MLMD) is chosen
here, so the end-of-run summary reads exactly this run's executions.

Partial runs (`from_nodes` / `to_nodes`) follow TFX's rule: the nodes before
the first one that runs are not rerun; their output artifacts are taken from
one earlier pipeline run (by default the latest). `base_run_id` names that
run; `pipeline.run.plan_partial_run` picks the latest run that has them.
"""
from __future__ import annotations

import datetime
import logging
from typing import Optional, Sequence

# TFX's own modules, not `tfx.v1`: that loads every standard component and the Google
# Cloud clients (~17 s more at each start on the 2-core machine) that local runs never use.
from tfx.dsl.compiler import compiler
from tfx.dsl.compiler import constants
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.metadata import sqlite_metadata_connection_config
from tfx.orchestration.portable import runtime_parameter_utils
from tfx.proto.orchestration import pipeline_pb2

logger = logging.getLogger(__name__)


def metadata_config(sqlite_path: str):
  return sqlite_metadata_connection_config(sqlite_path)


def new_run_id() -> str:
  return datetime.datetime.now().isoformat()


def run_local(pipeline: tfx_pipeline.Pipeline, *, run_id: Optional[str] = None,
              from_nodes: Optional[Sequence[str]] = None,
              to_nodes: Optional[Sequence[str]] = None,
              base_run_id: Optional[str] = None) -> str:
  """Runs `pipeline` (or the nodes between `from_nodes` and `to_nodes`); returns the run id."""
  run_id = run_id or new_run_id()
  pipeline_ir = compiler.Compiler().compile(pipeline)
  runtime_parameter_utils.substitute_runtime_parameter(
      pipeline_ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
  run_options = None
  if from_nodes or to_nodes:
    run_options = pipeline_pb2.RunOptions()
    partial = run_options.partial_run
    partial.from_nodes.extend(from_nodes or [])
    partial.to_nodes.extend(to_nodes or [])
    if base_run_id:
      partial.snapshot_settings.base_pipeline_run_strategy.base_run_id = base_run_id
    else:
      partial.snapshot_settings.latest_pipeline_run_strategy.SetInParent()
    logger.info("Partial run %s: from %s to %s, upstream artifacts of run %s", run_id,
                list(from_nodes or []) or "start", list(to_nodes or []) or "end",
                base_run_id or "(latest)")
  LocalDagRunner().run_with_ir(pipeline_ir, run_options=run_options)
  return run_id
