"""The pipeline's stages: one table that assembly, the CLI, partial runs, the run summary
and the code fingerprints all read.

| name       | node id            | component (in components/)         | reads outputs of   |
|------------|--------------------|------------------------------------|--------------------|
| data       | CocoExampleGen     | example_gen.CocoExampleGen         | -                  |
| statistics | BoxStatisticsGen   | box_statistics.BoxStatisticsGen    | data               |
| trainer    | RetinaNetTrainer   | trainer.component.RetinaNetTrainer | data, statistics   |
| evaluator  | RetinaNetEvaluator | evaluator.RetinaNetEvaluator       | data, trainer      |
| pusher     | RetinaNetPusher    | pusher.RetinaNetPusher             | trainer, evaluator |

A stage's code fingerprint (pipeline/code_version.py) starts at its component's
module. Importing this module loads nothing: the CLI reads it before TensorFlow.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Stage:
  name: str                  # --from_stage / --to_stage value
  node_id: str               # the component's id in the pipeline and in MLMD
  component: str             # importable class path of the component
  upstream: Tuple[str, ...]  # names of the stages whose outputs it reads

  @property
  def module(self) -> str:
    """The component's module: the root of the stage's code fingerprint."""
    return self.component.rsplit(".", 1)[0]


DATA = Stage("data", "CocoExampleGen", "components.example_gen.CocoExampleGen", ())
STATISTICS = Stage("statistics", "BoxStatisticsGen", "components.box_statistics.BoxStatisticsGen",
                   ("data",))
TRAINER = Stage("trainer", "RetinaNetTrainer", "components.trainer.component.RetinaNetTrainer",
                ("data", "statistics"))
EVALUATOR = Stage("evaluator", "RetinaNetEvaluator", "components.evaluator.RetinaNetEvaluator",
                  ("data", "trainer"))
PUSHER = Stage("pusher", "RetinaNetPusher", "components.pusher.RetinaNetPusher",
               ("trainer", "evaluator"))
STAGES: Tuple[Stage, ...] = (DATA, STATISTICS, TRAINER, EVALUATOR, PUSHER)
NAMES: Tuple[str, ...] = tuple(s.name for s in STAGES)

# Continuous training over data spans adds a stage between statistics and trainer
# (pipeline.create_pipeline with `continuous`; not part of the default pipeline).
VALIDATION = Stage("validation", "DataValidator", "components.data_validator.DataValidator",
                   ("data", "statistics"))
CONTINUOUS_STAGES: Tuple[Stage, ...] = (VALIDATION,)

# Nodes of the pipeline that are not stages of their own: the fine-tuning base model's
# Importer and the Evaluator's baseline Resolver (also the warm start's model); with
# continuous training, the current schema, the window of spans and the held-out span.
BASE_MODEL_IMPORTER = "BaseModelImporter"
BASELINE_RESOLVER = "LatestBlessedModelResolver"
SCHEMA_RESOLVER = "CurrentSchemaResolver"
WINDOW_RESOLVER = "SpanWindowResolver"
HELD_OUT_RESOLVER = "HeldOutSpanResolver"


def by_name(name: str) -> Stage:
  for stage in STAGES:
    if stage.name == name:
      return stage
  raise KeyError(f"no stage {name!r} (stages: {', '.join(NAMES)})")


def previous(name: str) -> Optional[Stage]:
  """The stage before `name` in pipeline order; None for the first."""
  index = NAMES.index(name)
  return STAGES[index - 1] if index else None


def upstream_node_ids(name: str) -> Tuple[str, ...]:
  """Node ids whose outputs the stage reads (what a partial run starting there reuses)."""
  return tuple(by_name(up).node_id for up in by_name(name).upstream)
