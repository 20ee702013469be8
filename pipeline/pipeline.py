"""`create_pipeline`: declares the graph data -> statistics -> trainer -> evaluator -> pusher.

Pure: it builds and returns a TFX `Pipeline` and touches no files. Runners
(`pipeline/local_runner.py`, `pipeline/vertex_runner.py`) own paths, the
metadata store and the orchestrator.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ml_metadata.proto import metadata_store_pb2
# TFX's own modules rather than `tfx.v1`, which also loads every standard component and the
# Google Cloud clients (pipeline/local_runner.py).
from tfx.dsl.components.base.base_node import BaseNode
from tfx.dsl.components.common.importer import Importer
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_artifact_strategy import LatestArtifactStrategy
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.types import standard_artifacts
from tfx.types.channel import Channel

from components import resolvers
from components.box_statistics import BoxStatisticsGen, statistics_config_json
from components.data_validator import DataValidator
from components.evaluator import RetinaNetEvaluator
from components.example_gen import CocoExampleGen
from components.pusher import RetinaNetPusher
from components.trainer import RetinaNetTrainer
from components.trainer.request import TrainerRequest
from data.validation import ValidationThresholds
from pipeline import stages
from pipeline.datasets import DatasetPaths
from retinanet import config as config_lib
from retinanet.evaluation.blessing import (DEFAULT_MAX_CLASS_REGRESSION, DEFAULT_THRESHOLDS,
                                           BlessingThresholds)


def resume_dir(pipeline_root: str) -> str:
  """Where unfinished trainings live until a rerun resumes them (trainer executor)."""
  return f"{pipeline_root.rstrip('/')}/{stages.TRAINER.node_id}/resume"


@dataclasses.dataclass(frozen=True)
class Training:
  """How the model is trained, besides its config: the Trainer's request (its config_json,
  code_version and resume_dir are filled in by create_pipeline), a model to fine-tune
  from, and what the Trainer step itself requests on Vertex (a KFP ResourceSpec,
  vertex_runner.trainer_resources)."""
  request: TrainerRequest = TrainerRequest()
  base_model_uri: Optional[str] = None
  resources: Optional[Any] = None


@dataclasses.dataclass(frozen=True)
class Serving:
  """Blessing and push: thresholds, the serving dir, the post-processing evaluated and
  pushed (NMS overrides), and the extra formats pushed beside the SavedModel."""
  serving_dir: str
  thresholds: BlessingThresholds = DEFAULT_THRESHOLDS
  postprocess_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  export_formats: Tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Continuous:
  """Continuous training over data spans (the local orchestrator; its resolvers are custom
  strategies, components/resolvers.py). Each run converts the newest span, validates it
  against the schema of the first (DataValidator, the gate before training), trains on
  the last `window` validated spans, warm-started from the latest blessed model for
  `continue_steps` steps (0: the config's steps), and is blessed only without a
  regression on the new span's val nor, beyond `max_held_out_regression` (and for any one
  class beyond `max_class_regression`), on the first span's val (forgetting)."""
  window: int = 2
  continue_steps: int = 0
  accept_anomalies: Tuple[str, ...] = ()
  thresholds: ValidationThresholds = ValidationThresholds()
  max_held_out_regression: float = DEFAULT_THRESHOLDS.max_ap_regression
  max_class_regression: float = DEFAULT_MAX_CLASS_REGRESSION


@dataclasses.dataclass(frozen=True)
class Orchestration:
  """How the pipeline runs: Beam args of the data stages, caching, the components' code
  fingerprints ({node id: fingerprint}, pipeline/code_version.py), the MLMD store, and
  whether the orchestrator takes only TFX's own resolver strategies.

  Vertex's compiler takes only TFX's own strategies (`tfx_strategies_only`): the baseline
  is then TFX's LatestBlessedModelStrategy, and continuous training trains each run on
  the latest span alone (no window, no held-out set), validated against the latest
  schema, warm-started from the latest blessed model. The local orchestrator runs the
  custom strategies of components/resolvers.py."""
  beam_pipeline_args: Tuple[str, ...] = ()
  enable_cache: bool = True
  code_versions: Mapping[str, str] = dataclasses.field(default_factory=dict)
  metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None
  tfx_strategies_only: bool = False


def _data_stages(dataset: DatasetPaths, config: config_lib.ExperimentConfig,
                 versions: Mapping[str, str]) -> Tuple[BaseNode, BaseNode]:
  example_gen = CocoExampleGen(
      train_annotations=dataset.train_annotations, train_images=dataset.train_images,
      val_annotations=dataset.val_annotations, val_images=dataset.val_images,
      num_shards=dataset.num_shards, size_mismatch=dataset.size_mismatch,
      convert_unsupported_images=dataset.convert_unsupported_images, span=dataset.span,
      span_pattern=dataset.span_pattern,
      code_version=versions.get(stages.DATA.node_id, "")
  ).with_id(stages.DATA.node_id)
  statistics = BoxStatisticsGen(
      examples=example_gen.outputs["examples"], label_map=example_gen.outputs["label_map"],
      config_json=statistics_config_json(config),
      code_version=versions.get(stages.STATISTICS.node_id, "")
  ).with_id(stages.STATISTICS.node_id)
  return example_gen, statistics


def _examples_of(producer: str) -> Channel:
  """Every Examples artifact the data stage produced in this pipeline, in any run."""
  return Channel(type=standard_artifacts.Examples, producer_component_id=producer,
                 output_key="examples")


@dataclasses.dataclass(frozen=True)
class _ContinuousNodes:
  """The nodes Continuous adds; no window or held-out set with TFX's strategies only."""
  schema: BaseNode
  validator: BaseNode
  window: Optional[BaseNode] = None
  held_out: Optional[BaseNode] = None

  def nodes(self) -> List[BaseNode]:
    return [n for n in (self.schema, self.validator, self.window, self.held_out)
            if n is not None]


def _continuous_stages(example_gen: BaseNode, statistics: BaseNode, continuous: Continuous,
                       versions: Mapping[str, str],
                       tfx_strategies_only: bool) -> _ContinuousNodes:
  """The current schema's Resolver, DataValidator, the window's and the held-out span's
  Resolvers (Continuous)."""
  schemas = Channel(type=standard_artifacts.Schema,
                    producer_component_id=stages.VALIDATION.node_id, output_key="schema")
  if tfx_strategies_only:
    schema = Resolver(strategy_class=LatestArtifactStrategy, schema=schemas
                      ).with_id(stages.SCHEMA_RESOLVER)
  else:
    schema = Resolver(strategy_class=resolvers.CurrentSchemaStrategy, schema=schemas,
                      examples=example_gen.outputs["examples"]).with_id(stages.SCHEMA_RESOLVER)
  t = continuous.thresholds
  validator = DataValidator(
      examples=example_gen.outputs["examples"], label_map=example_gen.outputs["label_map"],
      statistics=statistics.outputs["statistics"], current_schema=schema.outputs["schema"],
      accept_anomalies=",".join(continuous.accept_anomalies), class_linf=t.class_linf,
      box_size_js=t.box_size_js, range_margin=t.range_margin,
      code_version=versions.get(stages.VALIDATION.node_id, "")
  ).with_id(stages.VALIDATION.node_id)
  if tfx_strategies_only:
    return _ContinuousNodes(schema, validator)
  window = Resolver(
      strategy_class=resolvers.SpanWindowStrategy, config={"num_spans": continuous.window},
      examples=_examples_of(stages.DATA.node_id),
      anomalies=Channel(type=standard_artifacts.ExampleAnomalies,
                        producer_component_id=stages.VALIDATION.node_id,
                        output_key="anomalies")
  ).with_id(stages.WINDOW_RESOLVER)
  window.add_upstream_node(validator)  # this run's span is validated first
  held_out = Resolver(strategy_class=resolvers.FirstSpanStrategy,
                      examples=_examples_of(stages.DATA.node_id)
                      ).with_id(stages.HELD_OUT_RESOLVER)
  held_out.add_upstream_node(example_gen)  # the first run's span is its own held-out set
  return _ContinuousNodes(schema, validator, window, held_out)


def _baseline_resolver(tfx_strategies_only: bool) -> BaseNode:
  """The latest blessed model: the Evaluator's baseline."""
  strategy = resolvers.LatestBlessedStrategy
  if tfx_strategies_only:
    # Its module imports every standard TFX component (TFMA, TFDV, ...), hence only here.
    from tfx.dsl.input_resolution.strategies import latest_blessed_model_strategy  # pylint: disable=g-import-not-at-top
    strategy = latest_blessed_model_strategy.LatestBlessedModelStrategy
  return Resolver(
      strategy_class=strategy,
      model=Channel(type=standard_artifacts.Model),
      model_blessing=Channel(type=standard_artifacts.ModelBlessing)
  ).with_id(stages.BASELINE_RESOLVER)


def _warm_start_resolver(example_gen: BaseNode) -> BaseNode:
  """Continuous training's baseline: the newest blessed model of earlier spans."""
  return Resolver(
      strategy_class=resolvers.WarmStartStrategy,
      model=Channel(type=standard_artifacts.Model),
      model_blessing=Channel(type=standard_artifacts.ModelBlessing),
      examples=example_gen.outputs["examples"]).with_id(stages.BASELINE_RESOLVER)


def _training_stage(example_gen: BaseNode, statistics: BaseNode, training: Training,
                    request: TrainerRequest, continuous_nodes: Optional[_ContinuousNodes],
                    baseline: BaseNode) -> List[BaseNode]:
  """[the base model's Importer (fine-tuning only), the Trainer]."""
  nodes: List[BaseNode] = []
  base_model = None
  examples, anomalies = example_gen.outputs["examples"], None
  if continuous_nodes:
    anomalies = continuous_nodes.validator.outputs["anomalies"]
    if continuous_nodes.window is not None:
      examples = continuous_nodes.window.outputs["examples"]
    base_model = baseline.outputs["model"]  # the warm start (none before the first blessing)
  elif training.base_model_uri:
    importer = Importer(source_uri=training.base_model_uri,
                        artifact_type=standard_artifacts.Model
                        ).with_id(stages.BASE_MODEL_IMPORTER)
    nodes.append(importer)
    base_model = importer.outputs["result"]
  trainer = RetinaNetTrainer(
      examples=examples, label_map=example_gen.outputs["label_map"],
      base_model=base_model, box_statistics=statistics.outputs["statistics"],
      anomalies=anomalies, request=request).with_id(stages.TRAINER.node_id)
  if training.resources is not None:
    trainer.with_platform_config(training.resources)
  return nodes + [trainer]


def _serving_stages(example_gen: BaseNode, trainer: BaseNode, baseline: BaseNode,
                    serving: Serving, versions: Mapping[str, str],
                    continuous_nodes: Optional[_ContinuousNodes],
                    continuous: Optional[Continuous]) -> List[BaseNode]:
  """[the Evaluator, the Pusher]."""
  overrides_json = json.dumps(dict(serving.postprocess_overrides), sort_keys=True)
  held_out = {}
  if continuous_nodes and continuous_nodes.held_out is not None:
    held_out = {"held_out_examples": continuous_nodes.held_out.outputs["examples"],
                "max_held_out_regression": continuous.max_held_out_regression,
                "max_class_regression": continuous.max_class_regression}
  evaluator = RetinaNetEvaluator(
      model=trainer.outputs["model"], examples=example_gen.outputs["examples"],
      baseline_model=baseline.outputs["model"], min_ap=serving.thresholds.min_ap,
      max_ap_regression=serving.thresholds.max_ap_regression,
      postprocess_overrides=overrides_json, **held_out,
      code_version=versions.get(stages.EVALUATOR.node_id, "")).with_id(stages.EVALUATOR.node_id)
  pusher = RetinaNetPusher(
      model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
      serving_dir=serving.serving_dir, postprocess_overrides=overrides_json,
      export_formats=",".join(serving.export_formats),
      code_version=versions.get(stages.PUSHER.node_id, "")).with_id(stages.PUSHER.node_id)
  return [evaluator, pusher]


def create_pipeline(*, pipeline_name: str, pipeline_root: str, dataset: DatasetPaths,
                    config: config_lib.ExperimentConfig, serving: Serving,
                    training: Training = Training(),
                    orchestration: Orchestration = Orchestration(),
                    continuous: Optional[Continuous] = None) -> tfx_pipeline.Pipeline:
  """Returns the RetinaNet pipeline (pipeline/stages.py lists its stages).

  `training.base_model_uri` (a Model artifact dir or pushed model dir with a
  `checkpoint/` folder) makes it a fine-tuning pipeline: the model is imported
  into MLMD and the Trainer starts from it. `continuous` makes it a continuous-training
  pipeline over data spans (Continuous). Each component gets its code
  fingerprint, so a cached result is invalidated exactly when the code that
  component runs changes.
  """
  config_lib.validate(config)
  config_json = config_lib.config_to_json(config)
  versions: Dict[str, str] = dict(orchestration.code_versions)
  example_gen, statistics = _data_stages(dataset, config, versions)
  request = dataclasses.replace(training.request, config_json=config_json,
                                code_version=versions.get(stages.TRAINER.node_id, ""),
                                resume_dir=resume_dir(pipeline_root))
  continuous_nodes: Optional[_ContinuousNodes] = None
  if continuous is not None:
    if training.base_model_uri:
      raise ValueError("continuous training warm-starts from its own latest blessed model; "
                       "it takes no base model to fine-tune from")
    request = dataclasses.replace(request, continue_steps=continuous.continue_steps)
    continuous_nodes = _continuous_stages(example_gen, statistics, continuous, versions,
                                          orchestration.tfx_strategies_only)
  baseline = (_warm_start_resolver(example_gen)
              if continuous_nodes and not orchestration.tfx_strategies_only
              else _baseline_resolver(orchestration.tfx_strategies_only))
  training_nodes = _training_stage(example_gen, statistics, training, request,
                                   continuous_nodes, baseline)
  # (The baseline is listed before the Trainer only when it feeds it: TFX sorts the nodes
  # topologically, keeping this order among independent ones.)
  resolved = [baseline, *training_nodes] if continuous_nodes else [*training_nodes, baseline]
  components = [example_gen, statistics,
                *(continuous_nodes.nodes() if continuous_nodes else []), *resolved,
                *_serving_stages(example_gen, training_nodes[-1], baseline, serving, versions,
                                 continuous_nodes, continuous)]
  return tfx_pipeline.Pipeline(
      pipeline_name=pipeline_name, pipeline_root=pipeline_root, components=components,
      enable_cache=orchestration.enable_cache,
      metadata_connection_config=orchestration.metadata_connection_config,
      beam_pipeline_args=list(orchestration.beam_pipeline_args))
