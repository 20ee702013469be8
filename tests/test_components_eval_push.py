"""Evaluator and Pusher components without an orchestrator (test_call).

The Evaluator evaluates the Model artifact's SavedModel and blesses against
the threshold, recording what it evaluated; the Pusher pushes exactly those
bytes (same digest), refuses an unblessed model, a blessing of another model
or of other post-processing, and a SavedModel that fails pre-push validation.
"""
import json
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from tfx.types import standard_artifacts

from components import ConversionReport, LabelMap
from components.evaluator import RetinaNetEvaluator
from components.example_gen import CocoExampleGen
from components.pusher import RetinaNetPusher
from data import sample_data
from retinanet import coco
from retinanet import config as config_lib
from retinanet import configs, factory
from retinanet import model_dir as model_dir_lib
from retinanet.serving import export, portable, validate, versioning
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
      examples=examples, label_map=label_map, conversion_report=_artifact(ConversionReport, root / "s"),
      train_annotations=dataset.annotation_files["train"], train_images=dataset.image_dirs["train"],
      val_annotations=dataset.annotation_files["val"], val_images=dataset.image_dirs["val"],
      num_shards=1, beam_pipeline=beam.Pipeline())
  config = config_lib.apply_overrides(configs.load_named_config("sample/tiny"),
                                      ["model.input_size=[64, 64]", "model.fpn.num_channels=16",
                                       "model.head.num_channels=16"])
  # What the Trainer does: a trained workspace, exported into the Model artifact.
  workspace = str(root / "workspace")
  model = factory.build_model(config.model)
  manager = tf.train.CheckpointManager(checkpointing.make_checkpoint(model=model),
                                       model_dir_lib.checkpoint_dir(workspace), 1)
  manager.save(checkpoint_number=1)
  config_lib.save_config(config, model_dir_lib.config_path(workspace))
  tf.io.gfile.copy(os.path.join(label_map.uri, "label_map.json"),
                   model_dir_lib.label_map_path(workspace))
  model_artifact = _artifact(standard_artifacts.Model, root / "model", artifact_id=17)
  export.export_model_dir(workspace, model_dir_lib.serving_model_dir(model_artifact.uri))
  return examples, model_artifact


def _evaluate(inputs, tmp_path, **params):
  examples, model = inputs
  evaluation = _artifact(standard_artifacts.ModelEvaluation, tmp_path / "evaluation")
  blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / "blessing")
  RetinaNetEvaluator.test_call(model=model, examples=examples, evaluation=evaluation,
                               blessing=blessing, **params)
  return evaluation, blessing


@pytest.fixture(scope="module")
def evaluated_artifacts(inputs, tmp_path_factory):
  """(evaluation, blessing) of the model's SavedModel (min_ap 0); the pre-push validation
  ran in a fresh process (this module fixture is set up before conftest's autouse
  in-process validation)."""
  return _evaluate(inputs, tmp_path_factory.mktemp("evaluated"), min_ap=0.0)


@pytest.fixture(scope="module")
def evaluated(evaluated_artifacts):
  """The blessing of the model's SavedModel (min_ap 0)."""
  return evaluated_artifacts[1]


def test_evaluator_writes_metrics_and_blesses(inputs, evaluated_artifacts):
  evaluation, blessing = evaluated_artifacts
  # It evaluated the Model artifact's SavedModel, against the data stage's ground truth.
  served = model_dir_lib.serving_model_dir(inputs[1].uri)
  assert blessing.get_string_custom_property("saved_model_dir") == served
  assert blessing.get_string_custom_property("saved_model_digest") == \
      validate.saved_model_digest(served)
  assert json.loads(blessing.get_string_custom_property("postprocess"))["nms_mode"] == "combined"
  assert evaluation.get_string_custom_property("ground_truth").endswith(
      "ground_truth/instances_val.json")
  metrics = json.load(open(os.path.join(evaluation.uri, "metrics.json")))
  assert len(metrics) == 12
  assert evaluation.get_float_custom_property("AP") == pytest.approx(metrics["AP"])
  assert evaluation.get_int_custom_property("num_images") == 6
  assert json.load(open(os.path.join(evaluation.uri, "per_class_ap.json")))["per_class"]
  assert isinstance(json.load(open(os.path.join(evaluation.uri, "detections.json"))), list)
  assert "COCOeval" not in open(os.path.join(evaluation.uri, "summary.txt")).read()
  assert blessing.get_int_custom_property("blessed") == 1
  assert blessing.get_int_custom_property("current_model_id") == 17
  assert os.path.exists(os.path.join(blessing.uri, "BLESSED"))


def test_evaluator_with_other_post_processing_evaluates_a_new_export(inputs, tmp_path):
  _, blessing = _evaluate(inputs, tmp_path, min_ap=0.0,
                          postprocess_overrides='{"nms_mode": "per_class_soft"}')
  evaluated = str(tmp_path / "evaluation" / "Format-Serving")
  assert blessing.get_string_custom_property("saved_model_dir") == evaluated
  assert json.load(open(os.path.join(evaluated, "config.json")))["postprocess"]["nms_mode"] == \
      "per_class_soft"
  assert json.loads(blessing.get_string_custom_property("postprocess"))["nms_mode"] == \
      "per_class_soft"
  assert blessing.get_string_custom_property("saved_model_digest") == \
      validate.saved_model_digest(evaluated)


def test_evaluator_refuses_below_threshold(inputs, tmp_path):
  _, blessing = _evaluate(inputs, tmp_path, min_ap=0.99)
  assert blessing.get_int_custom_property("blessed") == 0
  assert "below the threshold" in blessing.get_string_custom_property("reason")
  assert os.path.exists(tmp_path / "blessing" / "NOT_BLESSED")


def _push(inputs, tmp_path, blessing, postprocess_overrides="{}", model=None, **params):
  pushed = _artifact(standard_artifacts.PushedModel, tmp_path / "pushed")
  RetinaNetPusher.test_call(model=model or inputs[1], model_blessing=blessing,
                            pushed_model=pushed, serving_dir=str(tmp_path / "serving"),
                            postprocess_overrides=postprocess_overrides, **params)
  return pushed


def _not_pushed(pushed, tmp_path, reason):
  assert pushed.get_int_custom_property("pushed") == 0
  assert reason in pushed.get_string_custom_property("reason")
  assert versioning.list_versions(str(tmp_path / "serving")) == []


def test_pusher_refuses_an_unblessed_model(inputs, tmp_path):
  blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / "blessing")
  blessing.set_int_custom_property("blessed", 0)
  blessing.set_string_custom_property("reason", "AP 0.1 is below the threshold 0.3")
  _not_pushed(_push(inputs, tmp_path, blessing), tmp_path, "below the threshold")


def test_pusher_refuses_post_processing_that_was_not_evaluated(inputs, evaluated, tmp_path):
  pushed = _push(inputs, tmp_path, evaluated, postprocess_overrides='{"nms_mode": "global_soft"}')
  _not_pushed(pushed, tmp_path, "rerun from the Evaluator with these --postprocess settings")
  # Overrides equal to the evaluated settings are the same push.
  same = _push(inputs, tmp_path / "same", evaluated,
               postprocess_overrides='{"nms_mode": "combined"}')
  assert same.get_int_custom_property("pushed") == 1


def test_pusher_refuses_a_blessing_of_another_model(inputs, evaluated, tmp_path):
  other = _artifact(standard_artifacts.Model, inputs[1].uri, artifact_id=18)
  _not_pushed(_push(inputs, tmp_path, evaluated, model=other), tmp_path,
              "the blessing is for Model artifact 17, not 18")


def test_pusher_does_not_push_a_model_that_fails_validation(inputs, tmp_path):
  broken = str(tmp_path / "broken")
  tf.io.gfile.makedirs(broken)
  served = model_dir_lib.serving_model_dir(inputs[1].uri)
  for name in ("label_map.json", "config.json"):
    tf.io.gfile.copy(os.path.join(served, name), os.path.join(broken, name))
  with open(os.path.join(broken, "saved_model.pb"), "wb") as f:
    f.write(b"not a SavedModel")
  blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / "blessing")
  blessing.set_int_custom_property("blessed", 1)
  blessing.set_int_custom_property("current_model_id", 17)
  blessing.set_string_custom_property("saved_model_dir", broken)
  blessing.set_string_custom_property("saved_model_digest", validate.saved_model_digest(broken))
  blessing.set_string_custom_property("postprocess", export.postprocess_json(
      export.effective_postprocess(inputs[1].uri)))
  pushed = _push(inputs, tmp_path, blessing)
  _not_pushed(pushed, tmp_path, "pre-push validation failed")
  assert pushed.get_string_custom_property("validation").startswith("failed")
  assert versioning.list_versions(str(tmp_path / "serving")) == []
  assert not [n for n in os.listdir(tmp_path / "serving") if n.startswith(".tmp-")]


@pytest.mark.fresh_validation
def test_pusher_pushes_the_evaluated_bytes(inputs, evaluated, tmp_path):
  # The Evaluator validated the evaluated bytes in a fresh process (the module-scoped
  # `evaluated` fixture is set up before conftest's autouse in-process validation) and
  # recorded it with their digest.
  recorded = json.loads(evaluated.get_string_custom_property("pre_push_validation"))
  assert recorded["valid"] and recorded["process"] != os.getpid()
  assert set(recorded["valid_detections"]) == set(export.SIGNATURE_NAMES)
  assert evaluated.get_string_custom_property("validated_digest") == \
      evaluated.get_string_custom_property("saved_model_digest")
  first = _push(inputs, tmp_path, evaluated)
  assert first.get_int_custom_property("pushed") == 1
  assert first.get_string_custom_property("validation") == "passed"
  version_dir = first.get_string_custom_property("pushed_destination")
  evaluated_digest = evaluated.get_string_custom_property("saved_model_digest")
  assert validate.saved_model_digest(version_dir) == evaluated_digest
  assert first.get_string_custom_property("saved_model_digest") == evaluated_digest
  assert os.path.exists(os.path.join(version_dir, "saved_model.pb"))
  assert os.path.isdir(os.path.join(version_dir, "checkpoint"))   # fine-tuning can start here
  assert coco.load_label_map(os.path.join(version_dir, "label_map.json")).num_classes == 5
  loaded = tf.saved_model.load(version_dir)
  out = loaded.signatures["serving_default"](images=tf.zeros([2, 50, 70, 3], tf.uint8))
  assert out["boxes"].shape[0] == 2
  assert versioning.list_versions(str(tmp_path / "serving")) == [
      first.get_int_custom_property("pushed_version")]


def test_pusher_refuses_bytes_whose_recorded_validation_failed(inputs, evaluated, tmp_path):
  blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / "blessing")
  for key in ("blessed", "current_model_id"):
    blessing.set_int_custom_property(key, evaluated.get_int_custom_property(key))
  for key in ("saved_model_dir", "saved_model_digest", "postprocess", "validated_digest"):
    blessing.set_string_custom_property(key, evaluated.get_string_custom_property(key))
  blessing.set_string_custom_property("pre_push_validation", json.dumps(
      {"export_dir": "x", "valid": False, "error": "signature serve_images: boxes are not finite"}))
  _not_pushed(_push(inputs, tmp_path, blessing), tmp_path,
              "pre-push validation failed: signature serve_images: boxes are not finite")
  assert versioning.list_versions(str(tmp_path / "serving")) == []


def test_pusher_pushes_checked_onnx_and_tflite_beside_the_saved_model(inputs, evaluated, tmp_path):
  pushed = _push(inputs, tmp_path, evaluated, export_formats="onnx,tflite_int8")
  assert pushed.get_int_custom_property("pushed") == 1
  version_dir = pushed.get_string_custom_property("pushed_destination")
  # The SavedModel part is still exactly the evaluated bytes.
  assert validate.saved_model_digest(version_dir) == evaluated.get_string_custom_property(
      "saved_model_digest")
  manifest = json.loads(pushed.get_string_custom_property("export_formats"))
  assert sorted(manifest) == ["onnx", "tflite_int8"]
  with open(os.path.join(version_dir, "formats", "manifest.json")) as f:
    assert json.load(f) == manifest
  for fmt, entry in manifest.items():
    path = os.path.join(version_dir, entry["file"])
    assert validate.file_digest(path) == entry["sha256"] == pushed.get_string_custom_property(
        f"digest_{fmt}")
    assert os.path.getsize(path) == entry["bytes"]
  assert manifest["onnx"]["check"].startswith("same detections as the SavedModel")
  # The pushed ONNX answers like the pushed SavedModel.
  images = np.random.RandomState(3).randint(0, 256, (2, 48, 80, 3)).astype(np.uint8)
  onnx_out = portable.OnnxDetector(os.path.join(version_dir, "formats", "model.onnx"))(images)
  saved = portable.load_detector("saved_model", version_dir)(images)
  assert portable.compare_detections(saved, onnx_out) == []


def test_pusher_refuses_unknown_or_gpu_only_formats(inputs, evaluated, tmp_path):
  _not_pushed(_push(inputs, tmp_path, evaluated, export_formats="onnx,tftrt_fp16"), tmp_path,
              "convert on the serving GPU")
  assert portable.parse_formats(" onnx, tflite ") == ["onnx", "tflite"]
  with pytest.raises(portable.ExportError, match="repeat"):
    portable.parse_formats("onnx,onnx")
