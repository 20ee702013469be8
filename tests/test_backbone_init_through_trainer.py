"""`model.backbone.init_checkpoint` through the path users take: the Trainer executor.

Each case writes a backbone checkpoint the way the README says (the committed
Model Garden ImageNet fixture with the `modelgarden:` scheme; Keras-applications
h5 weights converted by `python -m retinanet.modeling.imagenet_weights` for a
ResNet and a MobileNetV3), sets it with the same `--set` override a user
passes, and trains one step at learning rate 0 with frozen batch norm through
`components.trainer.executor.Executor`. The trained model's backbone must then
be exactly the checkpoint's: same C3..C5 features.
"""
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from tfx.types import standard_artifacts

from components import LabelMap
from components.trainer import executor
from retinanet import coco, layout, task
from retinanet import config as config_lib
from retinanet.modeling import imagenet_weights, mobilenet_v3
from tests.test_training_fixtures import tiny_config

MODELGARDEN_FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures",
                                   "modelgarden_resnet_imagenet")
# One step that changes no weight: learning rate 0 and batch-norm statistics frozen.
NO_UPDATE = ["optimizer.base_learning_rate=0.0", "optimizer.warmup_learning_rate=0.0",
             "optimizer.warmup_steps=0", "model.backbone.freeze_batch_norm=true",
             "train.total_steps=1", "train.steps_per_execution=1", "train.log_every=1",
             "train.checkpoint_every=1", "train.global_batch_size=2"]


@pytest.fixture(scope="module")
def inputs(shared_records, tmp_path_factory):
  """(examples, label_map) artifacts over 8 generated images at 128 px."""
  root = tmp_path_factory.mktemp("backbone_init")
  pattern = shared_records(num_images=8, num_shards=1)
  examples = standard_artifacts.Examples()
  examples.uri = str(root / "examples")
  examples.split_names = json.dumps(["train", "val"])
  os.makedirs(os.path.join(examples.uri, layout.SPLIT_DIR_PREFIX + "train"))
  for path in tf.io.gfile.glob(pattern):
    shutil.copy(path, os.path.join(examples.uri, layout.SPLIT_DIR_PREFIX + "train"))
  label_map = LabelMap()
  label_map.uri = str(root / "label_map")
  os.makedirs(label_map.uri)
  coco.save_label_map(coco.LabelMap(tuple(range(1, 6)), tuple("abcde")),
                      os.path.join(label_map.uri, layout.LABEL_MAP_FILE))
  return examples, label_map


def _train_through_executor(inputs, config, tmp_path):
  """The Trainer executor on `config`; returns the trained Model artifact's directory."""
  examples, label_map = inputs
  model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
  model.uri, model_run.uri = str(tmp_path / "model"), str(tmp_path / "model_run")
  executor.Executor().Do({"examples": [examples], "label_map": [label_map]},
                         {"model": [model], "model_run": [model_run]},
                         {"config_json": config_lib.config_to_json(config)})
  return model.uri


def _trained_backbone(model_uri):
  return task.load_model_dir(model_uri).model.backbone


def test_modelgarden_scheme_trains_from_the_imagenet_fixture(inputs, tmp_path):
  reference = np.load(os.path.join(MODELGARDEN_FIXTURE, "outputs.npz"))
  # The fixture: Model Garden's ResNet-50 x0.125 ImageNet classifier (batch-norm epsilon 1e-5).
  config = tiny_config([
      "model.backbone.depth=50", "model.backbone.width_multiplier=0.125",
      "model.backbone.freeze_stem_and_first_stage=true", 'model.padding="same"',
      "model.norm.epsilon=1e-5",
      f'model.backbone.init_checkpoint="modelgarden:{MODELGARDEN_FIXTURE}/ckpt"', *NO_UPDATE])
  backbone = _trained_backbone(_train_through_executor(inputs, config, tmp_path))
  features = backbone(tf.constant(reference["images"]), training=False)
  for level in (3, 4, 5):
    np.testing.assert_allclose(features[level].numpy(), reference[f"c{level}"], atol=1e-5)


def _keras_weights_checkpoint(keras_model, config, tmp_path):
  """The README's conversion: Keras h5 weights -> our backbone checkpoint (the CLI)."""
  weights = str(tmp_path / "no_top.h5")
  keras_model.save_weights(weights)
  config_path = str(tmp_path / "config.json")
  config_lib.save_config(config, config_path)
  prefix = str(tmp_path / "pretrained" / "ckpt")
  assert imagenet_weights.main(["--config", config_path, "--weights", weights,
                                "--output", prefix]) == 0
  return prefix


def _randomize(keras_model, seed=0):
  rng = np.random.RandomState(seed)
  for variable in keras_model.weights:
    if "moving_variance" in variable.name:
      variable.assign(rng.uniform(0.5, 2.0, variable.shape))
    else:
      variable.assign(rng.normal(0.0, 0.05, variable.shape))


@pytest.mark.parametrize("backbone", ["resnet50", "mobilenet_v3_small"])
def test_keras_applications_checkpoint_trains_through_the_trainer(inputs, tmp_path, backbone):
  if backbone == "resnet50":
    keras_model = tf_keras.applications.ResNet50(include_top=False, weights=None,
                                                 input_shape=(None, None, 3))
    overrides = ["model.backbone.depth=50", "model.backbone.stride_in_1x1=true",
                 "model.backbone.width_multiplier=1.0"]
  else:
    keras_model = mobilenet_v3.keras_applications_model("small", 1.0, False)
    overrides = ['model.backbone.type="mobilenet_v3_small"', 'model.padding="same"',
                 "model.backbone.width_multiplier=1.0"]
  _randomize(keras_model)
  base = tiny_config(overrides + ["model.backbone.freeze_stem_and_first_stage=true"])
  prefix = _keras_weights_checkpoint(keras_model, base, tmp_path)
  config = config_lib.apply_overrides(base, [f'model.backbone.init_checkpoint="{prefix}"',
                                             *NO_UPDATE])
  backbone_model = _trained_backbone(_train_through_executor(inputs, config, tmp_path))
  images = tf.constant(np.random.RandomState(1).uniform(-2, 2, (2, 64, 64, 3)), tf.float32)
  expected = task.RetinaNetTask(config).build_model()
  fresh = expected.backbone(images, training=False)   # the random initialization
  assert task.initialize_backbone(expected, prefix)
  ours, theirs = backbone_model(images, training=False), expected.backbone(images, training=False)
  for level in (3, 4, 5):
    np.testing.assert_array_equal(ours[level].numpy(), theirs[level].numpy())
  # ...and it is not the random initialization.
  assert not np.allclose(fresh[5].numpy(), theirs[5].numpy())
