"""create_pipeline: components and wiring; the Vertex spec compiles offline."""
import json

import pytest

from pipeline import pipeline as pipeline_lib
from retinanet import config as config_lib

DATASET = pipeline_lib.DatasetPaths("gs://b/train.json", "gs://b/train", "gs://b/val.json",
                                    "gs://b/val")


def _pipeline(**kwargs):
  config = config_lib.apply_overrides(config_lib.ExperimentConfig(),
                                      ["model.num_classes=5", "train.total_steps=1000"])
  args = dict(pipeline_name="test", pipeline_root="gs://b/root", dataset=DATASET, config=config,
              serving_dir="gs://b/serving",
              code_versions={node: f"v-{node}" for node in pipeline_lib.STAGES})
  args.update(kwargs)
  return pipeline_lib.create_pipeline(**args)


def test_components_and_wiring():
  p = _pipeline()
  ids = [c.id for c in p.components]
  assert len(ids) == 6
  assert set(ids) == {pipeline_lib.DATA, pipeline_lib.STATISTICS, pipeline_lib.TRAINER,
                      pipeline_lib.BASELINE_RESOLVER, pipeline_lib.EVALUATOR, pipeline_lib.PUSHER}
  # Topological order: data, statistics, trainer, evaluator, pusher.
  order = [i for i in ids if i in pipeline_lib.STAGES]
  assert order == list(pipeline_lib.STAGES)
  by_id = {c.id: c for c in p.components}
  data, trainer = by_id[pipeline_lib.DATA], by_id[pipeline_lib.TRAINER]
  statistics = by_id[pipeline_lib.STATISTICS]
  evaluator, pusher = by_id[pipeline_lib.EVALUATOR], by_id[pipeline_lib.PUSHER]
  assert trainer.inputs["examples"].producer_component_id == data.id
  assert trainer.inputs["label_map"].producer_component_id == data.id
  assert statistics.inputs["examples"].producer_component_id == data.id
  assert trainer.inputs["box_statistics"].producer_component_id == statistics.id
  # The statistics are measured against the very config the Trainer trains.
  assert statistics.exec_properties["config_json"] == trainer.exec_properties["config_json"]
  assert evaluator.inputs["model"].producer_component_id == trainer.id
  assert evaluator.inputs["examples"].producer_component_id == data.id
  assert pusher.inputs["model"].producer_component_id == trainer.id
  assert pusher.inputs["model_blessing"].producer_component_id == evaluator.id
  # Every component carries its own code version: a change invalidates only its users.
  for component in (data, statistics, trainer, evaluator, pusher):
    assert component.exec_properties["code_version"] == f"v-{component.id}"
  config = json.loads(trainer.exec_properties["config_json"])
  assert config["model"]["num_classes"] == 5


def test_finetuning_pipeline_imports_the_base_model():
  p = _pipeline(base_model_uri="/models/serving/17", freeze_patterns=["^backbone/"])
  by_id = {c.id: c for c in p.components}
  assert pipeline_lib.BASE_MODEL in by_id
  trainer = by_id[pipeline_lib.TRAINER]
  assert trainer.inputs["base_model"].producer_component_id == pipeline_lib.BASE_MODEL
  assert json.loads(trainer.exec_properties["freeze_patterns"]) == ["^backbone/"]


def test_invalid_config_is_rejected():
  config = config_lib.ExperimentConfig()
  config.postprocess.nms_mode = "soft"
  with pytest.raises(config_lib.ConfigError, match="nms_mode"):
    _pipeline(config=config)


def test_vertex_spec_compiles_offline_with_every_component(tmp_path):
  from pipeline import vertex_runner
  p = _pipeline(beam_pipeline_args=["--runner=DataflowRunner", "--project=p"],
                postprocess_overrides={"nms_mode": "global_soft"},
                base_model_uri="gs://b/serving/1")
  path = vertex_runner.compile_pipeline(p, image="gcr.io/p/retinanet-tfx:1",
                                        output_path=str(tmp_path / "spec.json"))
  spec = json.load(open(path))
  tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
  for node in (pipeline_lib.DATA, pipeline_lib.TRAINER, pipeline_lib.EVALUATOR,
               pipeline_lib.PUSHER, pipeline_lib.BASELINE_RESOLVER, pipeline_lib.BASE_MODEL):
    # The resolver compiles into "<id>-model-resolver" / "<id>-model-blessing-resolver" tasks.
    assert any(t == node or t.startswith(node + "-") for t in tasks), f"{node} not compiled"
  executors = spec["pipelineSpec"]["deploymentSpec"]["executors"]
  images = {e["container"]["image"] for e in executors.values() if "container" in e}
  assert images == {"gcr.io/p/retinanet-tfx:1"}
  text = json.dumps(spec)
  for parameter in ("config_json", "code_version", "min_ap", "serving_dir",
                    "postprocess_overrides", "train_annotations", "global_soft",
                    "DataflowRunner"):
    assert parameter in text, f"{parameter} not in the compiled spec"
