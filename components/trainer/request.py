"""What the Trainer is asked to do, besides its input artifacts: one typed definition.

`create_pipeline` fills a `TrainerRequest`; the component's spec declares one
execution parameter per field (`spec_parameters`); the executor (and every
worker of a training job) reads it back with `from_exec_properties`. The exec
properties are the fields themselves, so compiled specs keep one readable
parameter per field.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Mapping, Tuple

# Workspaces of unfinished trainings (other configs or data) kept for a later resume.
KEEP_UNFINISHED_TRAININGS = 2


@dataclasses.dataclass(frozen=True)
class TrainerRequest:
  # The full ExperimentConfig as JSON (validated again by the executor).
  config_json: str = ""
  # tf.distribute strategy name; overrides config.train.strategy when set.
  strategy: str = ""
  # TPU address / zone / project for strategy "tpu".
  tpu: str = ""
  tpu_zone: str = ""
  gcp_project: str = ""
  # Variable-name regexes to freeze (fine-tuning).
  freeze_patterns: Tuple[str, ...] = ()
  # The Trainer's code fingerprint: keys the cache and the resume workspace.
  code_version: str = ""
  # Root of the resume workspaces (executor docstring); "" = train in the output URI.
  resume_dir: str = ""
  keep_unfinished_trainings: int = KEEP_UNFINISHED_TRAININGS
  # VertexJobSpec JSON (vertex_job.py): run the training as a Vertex AI CustomJob.
  vertex_job: str = ""
  # Warm start (continuous training): with a base model, train this many steps (the
  # schedule scaled to them, config.with_total_steps); 0 = the config's total_steps.
  continue_steps: int = 0

  def to_exec_properties(self) -> Dict[str, Any]:
    """One exec property per field (freeze_patterns as a JSON list)."""
    properties = dataclasses.asdict(self)
    properties["freeze_patterns"] = json.dumps(list(self.freeze_patterns))
    return properties

  @classmethod
  def from_exec_properties(cls, properties: Mapping[str, Any]) -> "TrainerRequest":
    """The request of an executor's exec properties (absent or None fields: defaults)."""
    values = {f.name: properties[f.name] for f in dataclasses.fields(cls)
              if properties.get(f.name) is not None}
    if "freeze_patterns" in values:
      values["freeze_patterns"] = tuple(json.loads(values["freeze_patterns"] or "[]"))
    for name in ("keep_unfinished_trainings", "continue_steps"):
      if name in values:
        values[name] = int(values[name])
    return cls(**values)

  @classmethod
  def spec_parameters(cls) -> Dict[str, Any]:
    """The ComponentSpec PARAMETERS: one ExecutionParameter per field."""
    from tfx.types.component_spec import ExecutionParameter  # pylint: disable=g-import-not-at-top
    kinds = {"int": int}
    return {f.name: ExecutionParameter(type=kinds.get(str(f.type), str),
                                       optional=f.name != "config_json")
            for f in dataclasses.fields(cls)}
