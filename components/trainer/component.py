"""RetinaNetTrainer: a custom TFX component around `retinanet.training.train`."""
from __future__ import annotations

import json
from typing import Optional, Sequence

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts

from components.trainer import executor
from components.trainer.spec import TrainerSpec


class RetinaNetTrainer(base_component.BaseComponent):
  """Trains RetinaNet on the Examples of CocoExampleGen.

  Outputs `model` (in `Format-Serving/`: the SavedModel that is evaluated and
  pushed, config.json, label_map.json and the final checkpoint for fine-tuning)
  and `model_run` (TensorBoard logs). An unfinished training of the same
  config and data is resumed from `resume_dir` (see executor.py). With
  `vertex_job` (a VertexJobSpec JSON) the training runs as a Vertex AI
  CustomJob on the machines it names (vertex_job.py).
  """
  SPEC_CLASS = TrainerSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self,
               *,
               examples: types.BaseChannel,
               label_map: types.BaseChannel,
               config_json: str,
               base_model: Optional[types.BaseChannel] = None,
               box_statistics: Optional[types.BaseChannel] = None,
               strategy: str = "",
               tpu: str = "",
               tpu_zone: str = "",
               gcp_project: str = "",
               freeze_patterns: Sequence[str] = (),
               code_version: str = "",
               resume_dir: str = "",
               keep_unfinished_trainings: int = 2,
               vertex_job: str = ""):
    spec = TrainerSpec(
        examples=examples,
        label_map=label_map,
        base_model=base_model,
        box_statistics=box_statistics,
        config_json=config_json,
        strategy=strategy,
        tpu=tpu,
        tpu_zone=tpu_zone,
        gcp_project=gcp_project,
        freeze_patterns=json.dumps(list(freeze_patterns)),
        code_version=code_version,
        resume_dir=resume_dir,
        keep_unfinished_trainings=keep_unfinished_trainings,
        vertex_job=vertex_job,
        model=types.Channel(type=standard_artifacts.Model),
        model_run=types.Channel(type=standard_artifacts.ModelRun),
    )
    super().__init__(spec=spec)
