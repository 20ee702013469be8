"""create_pipeline: components and wiring as the stage table says; the Vertex spec compiles
offline."""
import importlib
import json

import pytest

from components.trainer.request import TrainerRequest
from pipeline import pipeline as pipeline_lib
from pipeline import stages
from retinanet import config as config_lib
from retinanet import configs

DATASET = pipeline_lib.DatasetPaths("gs://b/train.json", "gs://b/train", "gs://b/val.json",
                                    "gs://b/val")
SERVING = pipeline_lib.Serving(serving_dir="gs://b/serving")
VERSIONS = pipeline_lib.Orchestration(
    code_versions={stage.node_id: f"v-{stage.node_id}" for stage in stages.STAGES})


def _pipeline(**kwargs):
  config = config_lib.apply_overrides(config_lib.ExperimentConfig(),
                                      ["model.num_classes=5", "train.total_steps=1000"])
  args = dict(pipeline_name="test", pipeline_root="gs://b/root", dataset=DATASET, config=config,
              serving=SERVING, orchestration=VERSIONS)
  args.update(kwargs)
  return pipeline_lib.create_pipeline(**args)


def _producers(component):
  return {channel.producer_component_id for channel in component.inputs.values()}


def test_components_and_wiring_follow_the_stage_table():
  p = _pipeline()
  ids = [c.id for c in p.components]
  assert len(ids) == 6
  assert set(ids) == {s.node_id for s in stages.STAGES} | {stages.BASELINE_RESOLVER}
  # Topological order: the table's order.
  assert [i for i in ids if i != stages.BASELINE_RESOLVER] == [s.node_id for s in stages.STAGES]
  by_id = {c.id: c for c in p.components}
  for stage in stages.STAGES:
    component = by_id[stage.node_id]
    # Each node is the table's component class, and reads the outputs of the table's upstream.
    module, name = stage.component.rsplit(".", 1)
    assert isinstance(component, getattr(importlib.import_module(module), name))
    assert _producers(component) - {stages.BASELINE_RESOLVER} == set(
        stages.upstream_node_ids(stage.name)), stage.name
    # Every component carries its own code version: a change invalidates only its users.
    assert component.exec_properties["code_version"] == f"v-{component.id}"
  data, trainer = by_id[stages.DATA.node_id], by_id[stages.TRAINER.node_id]
  statistics = by_id[stages.STATISTICS.node_id]
  assert trainer.inputs["box_statistics"].producer_component_id == statistics.id
  assert trainer.inputs["examples"].producer_component_id == data.id
  # The statistics are measured against the very model the Trainer trains (its input
  # size, anchors and matcher), with the Trainer's max_instances and coverage floor; the
  # rest of their config is the defaults, so that changing, say, the learning rate does
  # not rerun them.
  config = json.loads(trainer.exec_properties["config_json"])
  measured = json.loads(statistics.exec_properties["config_json"])
  assert measured["model"] == config["model"]
  assert measured["input"]["max_instances"] == config["input"]["max_instances"]
  assert measured["anchor_fit"]["min_coverage"] == config["anchor_fit"]["min_coverage"]
  default = json.loads(config_lib.config_to_json(config_lib.ExperimentConfig()))
  assert config["train"]["total_steps"] == 1000 != default["train"]["total_steps"]
  assert measured["optimizer"] == default["optimizer"] and measured["train"] == default["train"]
  assert config["model"]["num_classes"] == 5
  # The Trainer's parameters are its request's fields, read back unchanged.
  request = TrainerRequest.from_exec_properties(trainer.exec_properties)
  assert request.resume_dir == pipeline_lib.resume_dir("gs://b/root")
  assert request.code_version == f"v-{stages.TRAINER.node_id}"


def test_finetuning_pipeline_imports_the_base_model():
  training = pipeline_lib.Training(request=TrainerRequest(freeze_patterns=("^backbone/",)),
                                   base_model_uri="/models/serving/17")
  p = _pipeline(training=training)
  by_id = {c.id: c for c in p.components}
  assert stages.BASE_MODEL_IMPORTER in by_id
  trainer = by_id[stages.TRAINER.node_id]
  assert trainer.inputs["base_model"].producer_component_id == stages.BASE_MODEL_IMPORTER
  assert json.loads(trainer.exec_properties["freeze_patterns"]) == ["^backbone/"]
  assert TrainerRequest.from_exec_properties(trainer.exec_properties).freeze_patterns == (
      "^backbone/",)


def test_invalid_config_is_rejected():
  config = config_lib.ExperimentConfig()
  config.postprocess.nms_mode = "soft"
  with pytest.raises(config_lib.ConfigError, match="nms_mode"):
    _pipeline(config=config)


def test_vertex_spec_compiles_offline_with_every_component(tmp_path):
  from pipeline import vertex_runner
  p = _pipeline(
      orchestration=pipeline_lib.Orchestration(
          beam_pipeline_args=("--runner=DataflowRunner", "--project=p"), tfx_strategies_only=True),
      serving=pipeline_lib.Serving(serving_dir="gs://b/serving",
                                   postprocess_overrides={"nms_mode": "global_soft"}),
      training=pipeline_lib.Training(base_model_uri="gs://b/serving/1"))
  path = vertex_runner.compile_pipeline(p, image="gcr.io/p/retinanet-tfx:1",
                                        output_path=str(tmp_path / "spec.json"))
  spec = json.load(open(path))
  tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
  for node in [s.node_id for s in stages.STAGES] + [stages.BASELINE_RESOLVER,
                                                    stages.BASE_MODEL_IMPORTER]:
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


def test_conversion_options_reach_the_data_stage_from_the_command_line():
  from pipeline import cli, run  # pylint: disable=g-import-not-at-top
  flags = ["--runner=vertex", "--dataset=custom", "--train_annotations=gs://b/t.json",
           "--train_images=gs://b/t", "--val_annotations=gs://b/v.json", "--val_images=gs://b/v"]
  default = run.resolve_dataset(cli.build_parser().parse_args(flags), "gs://b")
  assert (default.size_mismatch, default.convert_unsupported_images) == ("skip", False)
  dataset = run.resolve_dataset(cli.build_parser().parse_args(
      flags + ["--size_mismatch=rescale", "--convert_unsupported_images"]), "gs://b")
  data = {c.id: c for c in _pipeline(dataset=dataset).components}[stages.DATA.node_id]
  assert data.exec_properties["size_mismatch"] == "rescale"
  assert data.exec_properties["convert_unsupported_images"] is True
  with pytest.raises(SystemExit):
    cli.build_parser().parse_args(flags + ["--size_mismatch=resize"])


@pytest.mark.parametrize("name", configs.list_configs())
def test_statistics_config_of_every_shipped_config_is_valid_and_keeps_the_model(name):
  """BoxStatisticsGen parses its config_json (config_from_dict validates the box coder with
  the loss): the statistics part of each shipped config must stay a valid config."""
  config = configs.load_named_config(name)
  [statistics] = [c for c in _pipeline(config=config).components
                  if c.id == stages.STATISTICS.node_id]
  measured = config_lib.config_from_dict(json.loads(statistics.exec_properties["config_json"]))
  assert measured.model == config.model and measured.loss == config.loss
  assert measured.input.max_instances == config.input.max_instances
