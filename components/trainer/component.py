"""RetinaNetTrainer: a custom TFX component around `retinanet.training.train`."""
from __future__ import annotations

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts

from components.trainer import executor
from components.trainer.request import TrainerRequest
from components.trainer.spec import TrainerSpec


class RetinaNetTrainer(base_component.BaseComponent):
  """Trains RetinaNet on the Examples of CocoExampleGen, as `request` asks.

  Outputs `model` (in `Format-Serving/`: the SavedModel that is evaluated and
  pushed, config.json, label_map.json and the final checkpoint for fine-tuning)
  and `model_run` (TensorBoard logs). An unfinished training of the same
  config and data is resumed from `request.resume_dir` (see executor.py). With
  `request.vertex_job` (a VertexJobSpec JSON) the training runs as a Vertex AI
  CustomJob on the machines it names (vertex_job.py).
  """
  SPEC_CLASS = TrainerSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self,
               *,
               examples: types.BaseChannel,
               label_map: types.BaseChannel,
               request: TrainerRequest,
               base_model: Optional[types.BaseChannel] = None,
               box_statistics: Optional[types.BaseChannel] = None,
               anomalies: Optional[types.BaseChannel] = None):
    spec = TrainerSpec(
        examples=examples,
        label_map=label_map,
        base_model=base_model,
        box_statistics=box_statistics,
        anomalies=anomalies,
        model=types.Channel(type=standard_artifacts.Model),
        model_run=types.Channel(type=standard_artifacts.ModelRun),
        **request.to_exec_properties())
    super().__init__(spec=spec)
