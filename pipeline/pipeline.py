"""`create_pipeline`: declares the graph data -> statistics -> trainer -> evaluator -> pusher.

Pure: it builds and returns a TFX `Pipeline` and touches no files. Runners
(`pipeline/local_runner.py`, `pipeline/vertex_runner.py`) own paths, the
metadata store and the orchestrator.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, List, Mapping, Optional, Sequence

from ml_metadata.proto import metadata_store_pb2
# TFX's own modules rather than `tfx.v1`, which also loads every standard component and the
# Google Cloud clients (pipeline/local_runner.py).
from tfx.dsl.components.base.base_node import BaseNode
from tfx.dsl.components.common.importer import Importer
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy)
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.types import standard_artifacts
from tfx.types.channel import Channel

from components.box_statistics import BoxStatisticsGen
from components.evaluator import RetinaNetEvaluator
from components.example_gen import CocoExampleGen
from components.pusher import RetinaNetPusher
from components.trainer import RetinaNetTrainer
from retinanet import config as config_lib

# Node ids, used by partial runs (`--from_stage/--to_stage`) and lineage.
DATA = "CocoExampleGen"
STATISTICS = "BoxStatisticsGen"
TRAINER = "RetinaNetTrainer"
BASE_MODEL = "BaseModelImporter"
BASELINE_RESOLVER = "LatestBlessedModelResolver"
EVALUATOR = "RetinaNetEvaluator"
PUSHER = "RetinaNetPusher"
STAGES = (DATA, STATISTICS, TRAINER, EVALUATOR, PUSHER)


def resume_dir(pipeline_root: str) -> str:
  """Where unfinished trainings live until a rerun resumes them (trainer executor)."""
  return f"{pipeline_root.rstrip('/')}/{TRAINER}/resume"


@dataclasses.dataclass(frozen=True)
class DatasetPaths:
  """Where a COCO-format dataset lives (local paths or gs://)."""
  train_annotations: str
  train_images: str
  val_annotations: str
  val_images: str


@dataclasses.dataclass(frozen=True)
class BlessingThresholds:
  """The Evaluator blesses when AP >= min_ap and AP >= last blessed AP - max_ap_regression."""
  min_ap: float = 0.3
  max_ap_regression: float = 0.01


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    dataset: DatasetPaths,
    config: config_lib.ExperimentConfig,
    serving_dir: str,
    thresholds: BlessingThresholds = BlessingThresholds(),
    num_shards: int = 0,
    strategy: str = "",
    base_model_uri: Optional[str] = None,
    freeze_patterns: Sequence[str] = (),
    postprocess_overrides: Optional[dict] = None,
    export_formats: Sequence[str] = (),
    tpu: str = "",
    tpu_zone: str = "",
    gcp_project: str = "",
    vertex_job_json: str = "",
    trainer_resources: Optional[Any] = None,
    beam_pipeline_args: Sequence[str] = (),
    enable_cache: bool = True,
    keep_unfinished_trainings: int = 2,
    code_versions: Optional[Mapping[str, str]] = None,
    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
) -> tfx_pipeline.Pipeline:
  """Returns the RetinaNet pipeline.

  `base_model_uri` (a Model artifact dir or pushed model dir with a
  `checkpoint/` folder) makes it a fine-tuning pipeline: the model is imported
  into MLMD and the Trainer starts from it. `export_formats` (portable.PUSHABLE_FORMATS)
  are pushed beside the SavedModel. `tpu` / `tpu_zone` / `gcp_project` locate a TPU
  for strategy "tpu"; `vertex_job_json` (a VertexJobSpec) runs the training as a
  Vertex CustomJob; `trainer_resources` (a KFP ResourceSpec) is what the Trainer
  step itself requests on Vertex (vertex_runner.trainer_resources). `code_versions` ({node id: code
  fingerprint}, pipeline/code_version.py) is passed to each component so that a
  cached result is invalidated exactly when the code that component runs changes.
  """
  config_lib.validate(config)
  versions = dict(code_versions or {})
  overrides_json = json.dumps(postprocess_overrides or {}, sort_keys=True)
  components: List[BaseNode] = []

  example_gen = CocoExampleGen(
      train_annotations=dataset.train_annotations,
      train_images=dataset.train_images,
      val_annotations=dataset.val_annotations,
      val_images=dataset.val_images,
      num_shards=num_shards,
      code_version=versions.get(DATA, "")).with_id(DATA)
  components.append(example_gen)
  config_json = config_lib.config_to_json(config)

  statistics = BoxStatisticsGen(
      examples=example_gen.outputs["examples"],
      label_map=example_gen.outputs["label_map"],
      config_json=config_json,
      code_version=versions.get(STATISTICS, "")).with_id(STATISTICS)
  components.append(statistics)

  base_model = None
  if base_model_uri:
    importer = Importer(
        source_uri=base_model_uri,
        artifact_type=standard_artifacts.Model).with_id(BASE_MODEL)
    components.append(importer)
    base_model = importer.outputs["result"]

  trainer = RetinaNetTrainer(
      examples=example_gen.outputs["examples"],
      label_map=example_gen.outputs["label_map"],
      base_model=base_model,
      box_statistics=statistics.outputs["statistics"],
      config_json=config_json,
      strategy=strategy,
      freeze_patterns=freeze_patterns,
      code_version=versions.get(TRAINER, ""),
      resume_dir=resume_dir(pipeline_root),
      keep_unfinished_trainings=keep_unfinished_trainings,
      tpu=tpu, tpu_zone=tpu_zone, gcp_project=gcp_project,
      vertex_job=vertex_job_json).with_id(TRAINER)
  if trainer_resources is not None:
    trainer.with_platform_config(trainer_resources)
  components.append(trainer)

  baseline = Resolver(
      strategy_class=LatestBlessedModelStrategy,
      model=Channel(type=standard_artifacts.Model),
      model_blessing=Channel(type=standard_artifacts.ModelBlessing)).with_id(BASELINE_RESOLVER)
  components.append(baseline)

  evaluator = RetinaNetEvaluator(
      model=trainer.outputs["model"],
      examples=example_gen.outputs["examples"],
      baseline_model=baseline.outputs["model"],
      min_ap=thresholds.min_ap,
      max_ap_regression=thresholds.max_ap_regression,
      postprocess_overrides=overrides_json,
      code_version=versions.get(EVALUATOR, "")).with_id(EVALUATOR)
  components.append(evaluator)

  pusher = RetinaNetPusher(
      model=trainer.outputs["model"],
      model_blessing=evaluator.outputs["blessing"],
      serving_dir=serving_dir,
      postprocess_overrides=overrides_json,
      export_formats=",".join(export_formats),
      code_version=versions.get(PUSHER, "")).with_id(PUSHER)
  components.append(pusher)

  return tfx_pipeline.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=components,
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=list(beam_pipeline_args))
