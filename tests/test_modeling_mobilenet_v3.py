"""MobileNetV3 backbones against tf_keras.applications (the reference): parameter
counts, feature shapes, weights mapped from a Keras weights file reproducing the
Keras features; then the whole detector with them: config/CLI, separable heads,
training, freezing, mixed precision and export."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from retinanet import config as config_lib
from retinanet import factory
from retinanet import layout
from retinanet.modeling import imagenet_weights, mobilenet_v3
from retinanet import task
from tests.test_training_fixtures import tiny_config

VARIANT_CASES = [("large", 1.0, False), ("large", 0.75, False), ("large", 1.0, True),
                 ("small", 1.0, False), ("small", 0.5, False), ("small", 0.75, True)]


def keras_features(keras_model: tf_keras.Model, variant: str) -> tf_keras.Model:
  """The Keras reference cut at our C3/C4/C5 layers."""
  names = mobilenet_v3.keras_feature_layers(variant)
  outputs = {level: (keras_model.get_layer(n).output if n else keras_model.output)
             for level, n in names.items()}
  return tf_keras.Model(keras_model.input, outputs)


@pytest.mark.parametrize("variant,alpha,minimalistic", VARIANT_CASES)
def test_params_and_feature_shapes_equal_keras_applications(variant, alpha, minimalistic):
  ref = mobilenet_v3.keras_applications_model(variant, alpha, minimalistic)
  ours = mobilenet_v3.MobileNetV3(variant=variant, width_multiplier=alpha,
                                  minimalistic=minimalistic)
  images = tf.zeros([1, 96, 160, 3])
  features = ours(images)
  reference = keras_features(ref, variant)(images)
  assert ours.count_params() == ref.count_params()
  assert len(ours.trainable_weights) == len(ref.trainable_weights)
  for level in (3, 4, 5):
    assert features[level].shape == reference[level].shape, level
    assert features[level].shape[1:3] == (96 // 2**level, 160 // 2**level)
    assert features[level].shape[-1] == mobilenet_v3.output_channels(variant, alpha)[level]


def test_make_divisible_by_hand():
  assert mobilenet_v3.make_divisible(16 * 0.75) == 16     # 12 -> 16 (rounds half up)
  assert mobilenet_v3.make_divisible(40 * 0.75) == 32     # 30 -> 32
  assert mobilenet_v3.make_divisible(72 * 0.5) == 40      # 36 -> 40
  assert mobilenet_v3.make_divisible(4) == 8              # never below the divisor
  assert mobilenet_v3.make_divisible(100) == 104          # 104 >= 0.9 * 100
  assert mobilenet_v3.make_divisible(11) == 16            # 8 < 0.9 * 11 -> +8


def test_hard_swish_by_hand():
  x = tf.constant([-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 5.0])
  np.testing.assert_allclose(mobilenet_v3.hard_swish(x).numpy(),
                             [0, 0, -1.5 * 1.5 / 6, 0, 1.5 * 4.5 / 6, 3.0, 5.0], rtol=1e-6)


def _randomize(model: tf_keras.Model, seed: int = 0) -> None:
  """Non-trivial batch norms (a freshly built one is the identity) and conv biases."""
  rng = np.random.RandomState(seed)
  for layer in model.layers:
    if isinstance(layer, tf_keras.layers.BatchNormalization):
      c = layer.gamma.shape[0]
      layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c),
                         rng.normal(0, 0.2, c), rng.uniform(0.5, 1.5, c)])
    elif isinstance(layer, tf_keras.layers.Conv2D) and layer.use_bias:
      kernel, bias = layer.get_weights()
      layer.set_weights([kernel, rng.normal(0, 0.2, bias.shape)])


@pytest.mark.parametrize("variant,alpha,minimalistic", [("large", 1.0, False),
                                                        ("small", 0.75, True)])
def test_keras_weights_file_maps_onto_our_backbone_exactly(tmp_path, variant, alpha,
                                                           minimalistic):
  """A random Keras model saved as an h5 file -> our checkpoint (the CLI) -> the
  detector's backbone, loaded through model.backbone.init_checkpoint: same C3..C5."""
  ref = mobilenet_v3.keras_applications_model(variant, alpha, minimalistic)
  _randomize(ref)
  weights = str(tmp_path / "no_top.h5")
  ref.save_weights(weights)
  config = config_lib.apply_overrides(config_lib.ExperimentConfig(), [
      f'model.backbone.type="mobilenet_v3_{variant}"', f"model.backbone.width_multiplier={alpha}",
      f"model.backbone.minimalistic={json.dumps(minimalistic)}", 'model.padding="same"',
      "model.input_size=[128,128]", "input.mean_rgb=[127.5,127.5,127.5]",
      "input.stddev_rgb=[127.5,127.5,127.5]"])
  config_path = str(tmp_path / "config.json")
  config_lib.save_config(config, config_path)
  prefix = str(tmp_path / "pretrained" / "ckpt")
  assert imagenet_weights.main(["--config", config_path, "--weights", weights,
                                "--output", prefix]) == 0
  config.model.backbone.init_checkpoint = prefix
  model = factory.build_model(config.model)
  assert task.initialize_backbone(model, config.model.backbone.init_checkpoint)
  raw = np.random.RandomState(1).uniform(0, 255, (2, 128, 128, 3)).astype(np.float32)
  ours = model.backbone((raw - 127.5) / 127.5, training=False)
  theirs = keras_features(ref, variant)(raw, training=False)
  for level in (3, 4, 5):
    scale = float(np.abs(theirs[level]).max())
    assert scale > 1e-2, level  # the features are not degenerate
    np.testing.assert_allclose(ours[level].numpy(), theirs[level].numpy(), rtol=0,
                               atol=1e-4 * scale, err_msg=f"C{level}")


def test_other_input_normalization_is_folded_into_the_stem(tmp_path):
  """With ImageNet mean/std the stem absorbs the affine: equal away from the border."""
  ref = mobilenet_v3.keras_applications_model("small", 1.0, True)
  _randomize(ref, seed=3)
  ours = mobilenet_v3.MobileNetV3(variant="small", minimalistic=True)
  ours(tf.zeros([1, 64, 64, 3]))
  mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
  mobilenet_v3.convert_keras_applications(ref, ours, mean, std)
  raw = np.random.RandomState(2).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
  stem = tf_keras.Model(ref.input, ref.get_layer("Conv/BatchNorm").output)(raw).numpy()
  x = (raw - np.array(mean, np.float32)) / np.array(std, np.float32)
  mine = ours.stem_bn(ours.stem_conv(x), training=False).numpy()
  np.testing.assert_allclose(mine[:, 1:-1, 1:-1], stem[:, 1:-1, 1:-1], atol=1e-3)
  assert np.abs(mine[:, 0] - stem[:, 0]).max() > 1e-3  # the zero-padded top row differs


def test_a_wrong_weights_file_names_the_missing_layer(tmp_path):
  ref = mobilenet_v3.keras_applications_model("small")
  ours = mobilenet_v3.MobileNetV3(variant="large")
  ours(tf.zeros([1, 64, 64, 3]))
  with pytest.raises(ValueError, match=r"'expanded_conv_1/depthwise' .* 'block1/depthwise_conv' of our "
                     r"MobileNetV3-Large x1"):
    mobilenet_v3.convert_keras_applications(ref, ours, (127.5,) * 3, (127.5,) * 3)
  with_se = mobilenet_v3.MobileNetV3(variant="small")
  with pytest.raises(ValueError, match="build the backbone"):
    mobilenet_v3.convert_keras_applications(ref, with_se, (127.5,) * 3, (127.5,) * 3)
  with_se(tf.zeros([1, 64, 64, 3]))
  with pytest.raises(ValueError, match="no layer 'expanded_conv/squeeze_excite/Conv'"):
    mobilenet_v3.convert_keras_applications(
        mobilenet_v3.keras_applications_model("small", minimalistic=True), with_se,
        (127.5,) * 3, (127.5,) * 3)
  with pytest.raises(ValueError, match="missing.h5"):
    mobilenet_v3.keras_applications_to_checkpoint(
        variant="large", weights=str(tmp_path / "missing.h5"), output_prefix=str(tmp_path / "c"),
        mean_rgb=(127.5,) * 3, stddev_rgb=(127.5,) * 3)


def test_freezing_and_symmetric_padding():
  frozen = mobilenet_v3.MobileNetV3(variant="large", width_multiplier=0.5,
                                    freeze_stem_and_first_stage=True, padding="symmetric")
  features = frozen(tf.zeros([1, 96, 64, 3]))
  assert {l: f.shape[1:3] for l, f in features.items()} == {3: (12, 8), 4: (6, 4), 5: (3, 2)}
  early = frozen.first_stage_and_stem_layers()
  assert [l.name for l in early] == ["stem_conv", "stem_bn", "block0", "block1", "block2"]
  assert all(not l.trainable for l in early) and frozen.block3.trainable
  bn_frozen = mobilenet_v3.MobileNetV3(variant="small", freeze_batch_norm=True)
  bn_frozen(tf.zeros([1, 64, 64, 3]))
  assert not any("bn" in v.name for v in bn_frozen.trainable_variables)


def test_config_selects_the_backbone_and_rejects_resnet_only_keys():
  config = config_lib.apply_overrides(config_lib.ExperimentConfig(), [
      "model.backbone.type=mobilenet_v3_large"])  # unquoted, as on the CLI
  assert config.model.backbone.type == "mobilenet_v3_large"
  config_lib.validate(config)
  for bad, match in ((["model.backbone.type=mobilenet_v3_tiny"], "model.backbone.type"),
                     (["model.backbone.type=mobilenet_v3_small", "model.backbone.stride_in_1x1=true"],
                      "stride_in_1x1 applies to ResNets only"),
                     (["model.backbone.minimalistic=true"], "minimalistic applies to MobileNetV3"),
                     (["model.backbone.type=mobilenet_v3_small",
                       'model.backbone.init_checkpoint="modelgarden:/x"'], "Model Garden ResNets")):
    with pytest.raises(config_lib.ConfigError, match=match):
      config_lib.validate(config_lib.apply_overrides(config_lib.ExperimentConfig(), bad))


def _head_model(separable: bool, num_classes: int = 4):
  cfg = tiny_config(["model.backbone.type=mobilenet_v3_small", "model.backbone.width_multiplier=0.5",
                     f"model.head.separable={json.dumps(separable)}",
                     f"model.num_classes={num_classes}"])
  return cfg, factory.build_model(cfg.model)


def test_separable_head_parameters_by_hand_and_class_prediction_variables():
  # 80 classes: the re-drawn kernel has 16 * 80 entries, so its sample std is within 2% of
  # 0.01 (one standard error) and the 20% tolerance below sits 10 standard errors out.
  cfg, model = _head_model(separable=True, num_classes=80)
  f, a, k = cfg.model.fpn.num_channels, cfg.model.num_anchors_per_location, cfg.model.num_classes
  # Each separable conv: 3x3 depthwise (9 * c_in) + pointwise (c_in * c_out) + bias (c_out).
  per_conv = lambda cin, cout: 9 * cin + cin * cout + cout
  tower = cfg.model.head.num_convs * per_conv(f, cfg.model.head.num_channels)
  assert model.class_head.count_params() == tower + per_conv(cfg.model.head.num_channels, a * k)
  assert model.box_head.count_params() == tower + per_conv(cfg.model.head.num_channels, a * 4)
  kernel, bias = factory.class_prediction_variables(model)
  assert kernel.shape == (1, 1, cfg.model.head.num_channels, a * k) and bias.shape == (a * k,)
  kernel.assign(tf.zeros_like(kernel))
  bias.assign(tf.zeros_like(bias))
  factory.reinitialize_class_prediction(model)
  assert np.std(kernel.numpy()) == pytest.approx(0.01, rel=0.2)
  np.testing.assert_allclose(tf.sigmoid(bias).numpy(), cfg.model.head.prior_probability, rtol=1e-5)


@pytest.fixture(scope="module")
def files(shared_records):
  return shared_records(num_images=8)


def test_loss_falls_and_freezing_by_regex_with_mobilenet(files, tmp_path, build_trainer):
  """30 steps on 2 fixed batches with MobileNetV3-Small + separable heads, the backbone's
  early blocks frozen by regex: the loss falls, the frozen weights do not move."""
  from retinanet.training import checkpointing  # pylint: disable=g-import-not-at-top
  cfg = tiny_config(["model.backbone.type=mobilenet_v3_small", "model.head.separable=true",
                     "optimizer.gradient_clip_norm=2.0", "input.scale_min=1.0",
                     "input.scale_max=1.0", "input.horizontal_flip=false",
                     "optimizer.warmup_steps=5", "optimizer.base_learning_rate=0.02"],
                    total_steps=30, steps_per_execution=10, log_every=10, checkpoint_every=1000)
  base = task.RetinaNetTask(cfg).build_inputs(files, is_training=True)
  tr = build_trainer(cfg, files, tmp_path,
                     dataset_fn=lambda ctx: base(ctx).take(2).cache().repeat(),
                     freeze_patterns=[r"^backbone/(stem|block[0-2]/)"])
  paths = checkpointing.variable_paths(tr.model)
  frozen = {p: v.numpy() for p, v in paths.items()
            if p.startswith(("backbone/stem_conv", "backbone/block1/")) and "moving_" not in p}
  assert frozen
  unfrozen = paths["backbone/block5/project_conv/kernel"].numpy().copy()
  result = tr.train()
  first, last = result.history[0][1], result.history[-1][1]
  assert last["total_loss"] < 0.8 * first["total_loss"], result.history
  for p, before in frozen.items():
    np.testing.assert_array_equal(paths[p].numpy(), before, err_msg=p)
  assert not np.array_equal(paths["backbone/block5/project_conv/kernel"].numpy(), unfrozen)


def test_mixed_float16_step_is_finite_with_mobilenet(files, tmp_path, build_trainer):
  from retinanet.training import strategy as strategy_lib  # pylint: disable=g-import-not-at-top
  cfg = tiny_config(["model.backbone.type=mobilenet_v3_large", "model.head.separable=true",
                     'train.mixed_precision="mixed_float16"'],
                    total_steps=2, steps_per_execution=1, log_every=1, checkpoint_every=100)
  previous = tf_keras.mixed_precision.global_policy()
  strategy_lib.set_precision_policy("mixed_float16")
  try:
    tr = build_trainer(cfg, files, tmp_path)
    result = tr.train()
  finally:
    tf_keras.mixed_precision.set_global_policy(previous)
  assert tr.model.backbone.block3.depthwise_conv.compute_dtype == "float16"
  assert result.final_step == 2
  for _, metrics in result.history:
    for key in ("class_loss", "box_loss", "total_loss"):
      assert np.isfinite(metrics[key]), metrics
  # An overflowing float16 gradient skips its step and halves the loss scale (dynamic
  # loss scaling); the weights stay finite either way.
  overflowed = [m for _, m in result.history if not np.isfinite(m["gradient_norm"])]
  assert float(tr.optimizer.loss_scale) <= 2.0**15 / 2**len(overflowed)
  assert all(np.isfinite(v.numpy()).all() for v in tr.model.variables)


def test_export_round_trip_with_mobilenet(tmp_path):
  """The Pusher's export of a MobileNetV3 detector serves the evaluation path's detections."""
  from retinanet import coco  # pylint: disable=g-import-not-at-top
  from retinanet.serving import export  # pylint: disable=g-import-not-at-top
  from retinanet.training import checkpointing  # pylint: disable=g-import-not-at-top
  from tests import test_serving_export as se  # pylint: disable=g-import-not-at-top
  config = se.tiny_config()
  config.model.backbone.type = "mobilenet_v3_small"
  config.model.backbone.width_multiplier = 0.75
  config.model.padding = "same"
  config_lib.validate(config)
  model = se.tiny_model(config)
  model_dir = str(tmp_path / "trained")
  manager = tf.train.CheckpointManager(checkpointing.make_checkpoint(model=model),
                                       os.path.join(model_dir, layout.CHECKPOINT_DIR), 1)
  manager.save(checkpoint_number=1)
  config_lib.save_config(config, os.path.join(model_dir, layout.CONFIG_FILE))
  coco.save_label_map(se.LABEL_MAP, os.path.join(model_dir, layout.LABEL_MAP_FILE))
  export_dir = str(tmp_path / "export")
  export.export_model_dir(model_dir, export_dir)
  loaded = tf.saved_model.load(export_dir)
  images = [se.random_image(*se.INPUT_SIZE, seed=s) for s in (5, 6)]
  outputs = se.run(loaded, "serve_images", images=tf.constant(np.stack(images)))
  for i, reference in enumerate(se.reference_detections(model, config, images)):
    se.assert_matches(outputs, i, reference)
