"""Evaluator and Pusher components without an orchestrator (test_call).

The Evaluator blesses against the threshold and the baseline; the Pusher
refuses an unblessed model (recording why) and versions a blessed one.
"""
import json
import os

import apache_beam as beam
import pytest
import tensorflow as tf
from tfx.types import standard_artifacts

from components import DatasetStatistics, LabelMap
from components.evaluator import RetinaNetEvaluator
from components.example_gen import CocoExampleGen
from components.pusher import RetinaNetPusher
from data import coco, sample_data
from retinanet import config as config_lib
from retinanet import configs, factory
from retinanet.serving import versioning
from retinanet.training import checkpointing


def _artifact(cls, uri, artifact_id=None):
  artifact = cls()
  artifact.uri = str(uri)
  if artifact_id is not None:
    artifact.id = artifact_id
  os.makedirs(artifact.uri, exist_ok=True)
  return artifact


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  """(examples artifact, model artifact): converted sample data and an untrained model dir."""
  root = tmp_path_factory.mktemp("eval_push")
  dataset = sample_data.generate_sample_dataset(str(root / "data"), num_train=4, num_val=6,
                                                image_size=(64, 64), seed=2)
  examples = _artifact(standard_artifacts.Examples, root / "examples")
  label_map = _artifact(LabelMap, root / "label_map")
  CocoExampleGen.test_call(
      examples=examples, label_map=label_map, statistics=_artifact(DatasetStatistics, root / "s"),
      train_annotations=dataset.annotation_files["train"], train_images=dataset.image_dirs["train"],
      val_annotations=dataset.annotation_files["val"], val_images=dataset.image_dirs["val"],
      num_shards=1, beam_pipeline=beam.Pipeline())
  config = config_lib.apply_overrides(configs.load_named_config("sample/tiny"),
                                      ["model.input_size=[64, 64]", "model.fpn.num_channels=16",
                                       "model.head.num_channels=16"])
  model_artifact = _artifact(standard_artifacts.Model, root / "model", artifact_id=17)
  model = factory.build_model(config.model)
  manager = tf.train.CheckpointManager(checkpointing.make_checkpoint(model=model),
                                       os.path.join(model_artifact.uri, "checkpoint"), 1)
  manager.save(checkpoint_number=1)
  config_lib.save_config(config, os.path.join(model_artifact.uri, "config.json"))
  tf.io.gfile.copy(os.path.join(label_map.uri, "label_map.json"),
                   os.path.join(model_artifact.uri, "label_map.json"))
  return examples, model_artifact


def _evaluate(inputs, tmp_path, **params):
  examples, model = inputs
  evaluation = _artifact(standard_artifacts.ModelEvaluation, tmp_path / "evaluation")
  blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / "blessing")
  RetinaNetEvaluator.test_call(model=model, examples=examples, evaluation=evaluation,
                               blessing=blessing, **params)
  return evaluation, blessing


def test_evaluator_writes_metrics_and_blesses(inputs, tmp_path):
  evaluation, blessing = _evaluate(inputs, tmp_path, min_ap=0.0)
  metrics = json.load(open(tmp_path / "evaluation" / "metrics.json"))
  assert len(metrics) == 12
  assert evaluation.get_float_custom_property("AP") == pytest.approx(metrics["AP"])
  assert evaluation.get_int_custom_property("num_images") == 6
  assert json.load(open(tmp_path / "evaluation" / "per_class_ap.json"))["per_class"]
  assert isinstance(json.load(open(tmp_path / "evaluation" / "detections.json")), list)
  assert "COCOeval" not in open(tmp_path / "evaluation" / "summary.txt").read()
  assert blessing.get_int_custom_property("blessed") == 1
  assert blessing.get_int_custom_property("current_model_id") == 17
  assert os.path.exists(tmp_path / "blessing" / "BLESSED")


def test_evaluator_refuses_below_threshold(inputs, tmp_path):
  _, blessing = _evaluate(inputs, tmp_path, min_ap=0.99)
  assert blessing.get_int_custom_property("blessed") == 0
  assert "below the threshold" in blessing.get_string_custom_property("reason")
  assert os.path.exists(tmp_path / "blessing" / "NOT_BLESSED")


def _push(inputs, tmp_path, blessed):
  _, model = inputs
  blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / f"blessing{blessed}")
  blessing.set_int_custom_property("blessed", blessed)
  blessing.set_string_custom_property("reason", "AP 0.1 is below the threshold 0.3")
  pushed = _artifact(standard_artifacts.PushedModel, tmp_path / f"pushed{blessed}")
  RetinaNetPusher.test_call(model=model, model_blessing=blessing, pushed_model=pushed,
                            serving_dir=str(tmp_path / "serving"))
  return pushed


def test_pusher_refuses_an_unblessed_model(inputs, tmp_path):
  pushed = _push(inputs, tmp_path, blessed=0)
  assert pushed.get_int_custom_property("pushed") == 0
  assert "below the threshold" in pushed.get_string_custom_property("reason")
  assert versioning.list_versions(str(tmp_path / "serving")) == []


def test_pusher_versions_a_blessed_model(inputs, tmp_path):
  first = _push(inputs, tmp_path, blessed=1)
  version_dir = first.get_string_custom_property("pushed_destination")
  assert os.path.exists(os.path.join(version_dir, "saved_model.pb"))
  assert os.path.isdir(os.path.join(version_dir, "checkpoint"))   # fine-tuning can start here
  assert coco.load_label_map(os.path.join(version_dir, "label_map.json")).num_classes == 5
  loaded = tf.saved_model.load(version_dir)
  out = loaded.signatures["serving_default"](images=tf.zeros([2, 50, 70, 3], tf.uint8))
  assert out["boxes"].shape[0] == 2
  assert versioning.list_versions(str(tmp_path / "serving")) == [
      first.get_int_custom_property("pushed_version")]
