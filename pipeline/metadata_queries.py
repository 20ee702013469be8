"""Read-only MLMD queries: the last run's outputs and the lineage of pushed models.

Cache hits also emit OUTPUT events for reused artifacts, so lineage follows only
executions in state COMPLETE (TFX notes).
"""
from __future__ import annotations

import dataclasses
import datetime
from typing import Dict, List, Optional, Sequence

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from retinanet import layout

COMPLETE = metadata_store_pb2.Execution.COMPLETE
CACHED = metadata_store_pb2.Execution.CACHED
OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)


def open_store(sqlite_path: str) -> metadata_store.MetadataStore:
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = sqlite_path
  return metadata_store.MetadataStore(config)


def custom_properties(node) -> Dict[str, object]:
  """An artifact's or execution's custom properties as plain Python values."""
  out = {}
  for key, value in node.custom_properties.items():
    kind = value.WhichOneof("value")
    if kind == "int_value":
      out[key] = value.int_value
    elif kind == "double_value":
      out[key] = value.double_value
    elif kind == "string_value":
      out[key] = value.string_value
    elif kind == "bool_value":
      out[key] = value.bool_value
  return out


def timestamp(ms: int) -> str:
  return datetime.datetime.fromtimestamp(ms / 1000).isoformat(timespec="seconds")


@dataclasses.dataclass
class ArtifactInfo:
  id: int
  type: str
  uri: str
  properties: Dict[str, object]
  created: str


@dataclasses.dataclass
class ExecutionInfo:
  id: int
  node: str
  state: str
  properties: Dict[str, object]
  created: str
  inputs: Dict[str, List[ArtifactInfo]]
  outputs: Dict[str, List[ArtifactInfo]]


class Lineage:
  """Walks MLMD from an artifact back through the executions that produced it."""

  def __init__(self, store: metadata_store.MetadataStore):
    self.store = store
    self._types = {t.id: t.name for t in store.get_artifact_types()}
    self._exec_types = {t.id: t.name for t in store.get_execution_types()}

  def artifact_info(self, artifact) -> ArtifactInfo:
    properties = custom_properties(artifact)
    if "span" in artifact.properties:  # TFX's own property of Examples (data spans)
      properties["span"] = artifact.properties["span"].int_value
    return ArtifactInfo(artifact.id, self._types.get(artifact.type_id, "?"), artifact.uri,
                        properties, timestamp(artifact.create_time_since_epoch))

  def producer(self, artifact_id: int) -> Optional[ExecutionInfo]:
    """The COMPLETE execution that wrote `artifact_id` (not cache hits that re-emit it)."""
    events = [e for e in self.store.get_events_by_artifact_ids([artifact_id])
              if e.type in OUTPUT_EVENTS]
    executions = self.store.get_executions_by_id([e.execution_id for e in events])
    complete = [e for e in executions if e.last_known_state == COMPLETE]
    if not complete:
      return None
    return self.execution_info(min(complete, key=lambda e: e.id))

  def execution_info(self, execution) -> ExecutionInfo:
    events = self.store.get_events_by_execution_ids([execution.id])
    by_id = {a.id: a for a in self.store.get_artifacts_by_id([e.artifact_id for e in events])}
    inputs: Dict[str, List[ArtifactInfo]] = {}
    outputs: Dict[str, List[ArtifactInfo]] = {}
    for event in events:
      key = event.path.steps[0].key if event.path.steps else "?"
      target = inputs if event.type in INPUT_EVENTS else outputs
      target.setdefault(key, []).append(self.artifact_info(by_id[event.artifact_id]))
    props = custom_properties(execution)
    node = str(props.get("__node_id__") or self._exec_types.get(execution.type_id, "?"))
    state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
    return ExecutionInfo(execution.id, node.split(".")[-1], state, props,
                         timestamp(execution.create_time_since_epoch), inputs, outputs)

  def upstream(self, artifact_id: int) -> List[ExecutionInfo]:
    """Every producing execution upstream of `artifact_id`, nearest first, each once."""
    seen, order, frontier = set(), [], [artifact_id]
    while frontier:
      current = frontier.pop(0)
      execution = self.producer(current)
      if execution is None or execution.id in seen:
        continue
      seen.add(execution.id)
      order.append(execution)
      for artifacts in execution.inputs.values():
        frontier.extend(a.id for a in artifacts)
    return order


def artifacts_of_type(store: metadata_store.MetadataStore, type_name: str) -> list:
  """Artifacts of one type; empty when the type was never registered in this store."""
  if type_name not in {t.name for t in store.get_artifact_types()}:
    return []
  return list(store.get_artifacts_by_type(type_name))


def latest_pushed_model(store: metadata_store.MetadataStore, pipeline_name: Optional[str] = None):
  """The newest PushedModel artifact with pushed=1 (optionally of one pipeline), or None."""
  pushed = [a for a in artifacts_of_type(store, "PushedModel")
            if custom_properties(a).get(layout.PushKeys.PUSHED) == 1]
  if pipeline_name:
    contexts = store.get_contexts_by_type("pipeline")
    ids = {c.id for c in contexts if c.name == pipeline_name}
    if not ids:
      return None
    in_pipeline = {a.id for cid in ids for a in store.get_artifacts_by_context(cid)}
    pushed = [a for a in pushed if a.id in in_pipeline]
  return max(pushed, key=lambda a: a.id) if pushed else None


# ------------------------------------------------------------ runs and nodes

PIPELINE_RUN_CONTEXT = "pipeline_run"
NODE_CONTEXT = "node"
DONE_STATES = (COMPLETE, CACHED)


def _context_names(store: metadata_store.MetadataStore, execution_id: int,
                   type_name: str) -> List[str]:
  type_ids = {t.id for t in store.get_context_types() if t.name == type_name}
  return [c.name for c in store.get_contexts_by_execution(execution_id) if c.type_id in type_ids]


def node_of(store: metadata_store.MetadataStore, execution_id: int) -> str:
  """The node id of an execution (its `node` context is named `<pipeline>.<node id>`)."""
  names = _context_names(store, execution_id, NODE_CONTEXT)
  return names[0].split(".", 1)[-1] if names else "?"


def node_executions(store: metadata_store.MetadataStore, pipeline_name: str,
                    node_id: str) -> list:
  """Every execution of one node of one pipeline, oldest first."""
  context = store.get_context_by_type_and_name(NODE_CONTEXT, f"{pipeline_name}.{node_id}")
  if context is None:
    return []
  return sorted(store.get_executions_by_context(context.id), key=lambda e: e.id)


def runs_with_outputs(store: metadata_store.MetadataStore, pipeline_name: str,
                      node_ids: Sequence[str]) -> List[str]:
  """Run ids (newest first) in which every node of `node_ids` completed or was cached,
  i.e. the runs whose artifacts a partial run starting after them can take."""
  run_sets = []
  for node_id in node_ids:
    runs = set()
    for execution in node_executions(store, pipeline_name, node_id):
      if execution.last_known_state in DONE_STATES:
        runs.update(_context_names(store, execution.id, PIPELINE_RUN_CONTEXT))
    run_sets.append(runs)
  common = set.intersection(*run_sets) if run_sets else set()
  contexts = [store.get_context_by_type_and_name(PIPELINE_RUN_CONTEXT, name) for name in common]
  return [c.name for c in sorted(contexts, key=lambda c: (c.create_time_since_epoch, c.id),
                                 reverse=True)]


@dataclasses.dataclass
class NodeRun:
  """One node's execution in a pipeline run: state and outputs (type name -> artifacts)."""
  node: str
  state: str
  outputs: Dict[str, List[ArtifactInfo]]


def run_executions(store: metadata_store.MetadataStore, run_id: str) -> Dict[str, NodeRun]:
  """{node id: NodeRun} of the executions recorded in one pipeline run (empty if none)."""
  context = store.get_context_by_type_and_name(PIPELINE_RUN_CONTEXT, run_id)
  if context is None:
    return {}
  lineage = Lineage(store)
  out: Dict[str, NodeRun] = {}
  for execution in sorted(store.get_executions_by_context(context.id), key=lambda e: e.id):
    info = lineage.execution_info(execution)
    outputs: Dict[str, List[ArtifactInfo]] = {}
    for artifacts in info.outputs.values():
      for artifact in artifacts:
        outputs.setdefault(artifact.type, []).append(artifact)
    out[node_of(store, execution.id)] = NodeRun(node_of(store, execution.id), info.state,
                                                outputs)
  return out
