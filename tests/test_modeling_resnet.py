"""ResNet backbone: shapes and strides, parameter counts from the architecture
table, freezing, checkpoint init and the Keras-applications weight conversion."""
import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from retinanet.modeling import resnet

# He et al. 2016, Table 1: (bottleneck?, blocks per stage conv2..conv5).
PAPER_TABLE = {18: (False, [2, 2, 2, 2]), 34: (False, [3, 4, 6, 3]),
               50: (True, [3, 4, 6, 3]), 101: (True, [3, 4, 23, 3]),
               152: (True, [3, 8, 36, 3])}


def paper_param_counts(depth):
  """(conv weights, BN channels) of a ResNet without its classifier, by hand."""
  bottleneck, blocks = PAPER_TABLE[depth]
  weights, bn = 7 * 7 * 3 * 64, 64
  cin = 64
  for stage, (n, w) in enumerate(zip(blocks, [64, 128, 256, 512])):
    cout = 4 * w if bottleneck else w
    for b in range(n):
      if bottleneck:
        weights += cin * w + 9 * w * w + w * cout
        bn += w + w + cout
      else:
        weights += 9 * cin * w + 9 * w * w
        bn += w + w
      if b == 0 and cin != cout:  # projection shortcut
        weights += cin * cout
        bn += cout
      cin = cout
  return weights, bn


def num_params(variables):
  return sum(int(np.prod(v.shape)) for v in variables)


_BUILT = {}


def built_backbone(depth):
  """One default backbone per depth for the read-only tests (building dominates test time)."""
  if depth not in _BUILT:
    _BUILT[depth] = resnet.ResNet(depth=depth)
    _BUILT[depth](tf.zeros([1, 32, 32, 3]), training=False)
  return _BUILT[depth]


@pytest.mark.parametrize("depth", [18])
def test_output_levels_strides_channels_and_param_count(depth):
  # All five depths are built (with an FPN and heads) in test_modeling_retinanet.py.
  backbone = built_backbone(depth)
  features = backbone(tf.zeros([1, 64, 96, 3]), training=False)
  assert sorted(features) == [3, 4, 5]
  widths = {3: 128, 4: 256, 5: 512}
  for level, x in features.items():
    expected_channels = widths[level] * (4 if depth >= 50 else 1)
    assert x.shape == (1, 64 // 2**level, 96 // 2**level, expected_channels)
    assert resnet.output_channels(depth)[level] == expected_channels
  weights, bn_channels = paper_param_counts(depth)
  assert num_params(backbone.trainable_variables) == weights + 2 * bn_channels
  assert num_params(backbone.non_trainable_variables) == 2 * bn_channels


@pytest.mark.parametrize("depth, multiplier", [(18, 0.5), (50, 0.25)])
def test_width_multiplier_scales_every_stage(depth, multiplier):
  backbone = resnet.ResNet(depth=depth, width_multiplier=multiplier)
  features = backbone(tf.zeros([1, 64, 64, 3]), training=False)
  expansion = 4 if depth >= 50 else 1
  for level, x in features.items():
    expected = int(round((64 * 2 ** (level - 2)) * multiplier)) * expansion
    assert x.shape[-1] == expected == resnet.output_channels(depth, multiplier)[level]
  assert backbone.stem_conv.kernel.shape[-1] == int(round(64 * multiplier))
  full = resnet.ResNet(depth=depth)
  full(tf.zeros([1, 64, 64, 3]), training=False)
  # Conv weights scale with the square of the width (first conv: linearly).
  ratio = num_params(backbone.trainable_variables) / num_params(full.trainable_variables)
  assert multiplier ** 2 * 0.9 < ratio < multiplier ** 2 * 1.1


def test_known_resnet50_size():
  # Keras' ResNet50(include_top=False) has 23,587,712 parameters of which 26,560
  # are conv biases (one per BN channel), which ours do not have.
  weights, bn = paper_param_counts(50)
  assert weights + 4 * bn + bn == 23_587_712


def test_odd_input_sizes_give_ceil_feature_sizes():
  features = built_backbone(18)(tf.zeros([2, 70, 33, 3]), training=False)
  for level, x in features.items():
    assert x.shape[1:3] == (math.ceil(70 / 2**level), math.ceil(33 / 2**level))


@pytest.fixture(scope="module")
def r50_stride_in_1x1():
  backbone = resnet.ResNet(depth=50, stride_in_1x1=True)
  backbone(tf.zeros([1, 32, 32, 3]))
  return backbone


def test_variable_names_are_readable_and_stable(r50_stride_in_1x1):
  backbone = r50_stride_in_1x1
  names = {v.name for v in backbone.variables}
  for expected in ["backbone/stem_conv/kernel:0", "backbone/stem_bn/gamma:0",
                   "backbone/conv2_block1/conv1/kernel:0",
                   "backbone/conv3_block1/shortcut_conv/kernel:0",
                   "backbone/conv4_block6/bn3/moving_variance:0",
                   "backbone/conv5_block3/conv3/kernel:0"]:
    assert expected in names
  assert not any("conv4_block7" in n for n in names)
  assert len(names) == len(backbone.variables)


def _stem_and_stage2_params(backbone):
  layers = backbone.first_stage_and_stem_layers()
  return sum(num_params(l.weights) for l in layers), layers


def test_freeze_stem_and_first_stage():
  free = built_backbone(18)
  frozen = resnet.ResNet(depth=18, freeze_stem_and_first_stage=True)
  x = tf.random.stateless_uniform([2, 64, 64, 3], seed=[1, 2])
  frozen(x)
  # stem conv 7*7*3*64 + stem BN gamma/beta 2*64; conv2_x: 2 basic blocks of two
  # 3x3 64->64 convs + BN gamma/beta each.
  frozen_trainable = 7 * 7 * 3 * 64 + 2 * 64 + 2 * 2 * (9 * 64 * 64 + 2 * 64)
  assert (num_params(free.trainable_variables) - num_params(frozen.trainable_variables)
          == frozen_trainable)
  trainable_ids = {id(v) for v in frozen.trainable_variables}
  for layer in frozen.first_stage_and_stem_layers():
    assert all(id(v) not in trainable_ids for v in layer.weights)
  assert all(id(v) in trainable_ids for v in frozen.blocks(3)[0].conv1.weights)
  # The frozen stem BN runs in inference mode even with training=True.
  before = [v.numpy() for v in frozen.stem_bn.weights]
  frozen(x, training=True)
  for b, v in zip(before, frozen.stem_bn.weights):
    np.testing.assert_array_equal(b, v.numpy())


def test_frozen_batch_norm_keeps_statistics_and_uses_them():
  x = tf.random.stateless_normal([2, 64, 64, 3], seed=[3, 4])
  frozen = resnet.ResNet(depth=18, freeze_batch_norm=True)
  frozen(x, training=False)
  normal = resnet.ResNet(depth=18)
  bn_vars = lambda m: [v for v in m.variables if "bn" in v.name and "moving" in v.name]
  before = [v.numpy() for v in bn_vars(frozen)]
  inference = frozen(x, training=False)
  training = frozen(x, training=True)
  for b, v in zip(before, bn_vars(frozen)):
    np.testing.assert_array_equal(b, v.numpy())
  for level in (3, 4, 5):
    np.testing.assert_allclose(training[level].numpy(), inference[level].numpy(), atol=1e-5)
  # Control: an unfrozen backbone does update its statistics in training mode.
  normal(x, training=False)
  normal_before = [v.numpy() for v in bn_vars(normal)]
  normal(x, training=True)
  assert any(np.any(b != v.numpy()) for b, v in zip(normal_before, bn_vars(normal)))
  # No BN variable of the frozen backbone is trainable; every conv kernel is.
  assert all("kernel" in v.name for v in frozen.trainable_variables)
  assert len(frozen.trainable_variables) == len([v for v in frozen.variables if "kernel" in v.name])


def test_checkpoint_round_trip(tmp_path):
  source = resnet.ResNet(depth=18)
  source(tf.zeros([1, 32, 32, 3]))
  rng = np.random.default_rng(0)
  for v in source.variables:  # also non-default BN statistics
    v.assign(rng.normal(size=v.shape).astype(np.float32) + (2.0 if "variance" in v.name else 0))
  path = resnet.save_backbone_checkpoint(source, str(tmp_path / "backbone" / "ckpt"))
  target = resnet.ResNet(depth=18)
  target(tf.zeros([1, 32, 32, 3]))
  assert any(np.any(a.numpy() != b.numpy()) for a, b in zip(source.variables, target.variables))
  resnet.load_backbone_checkpoint(target, path)
  assert [v.name for v in source.variables] == [v.name for v in target.variables]
  for a, b in zip(source.variables, target.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  # A directory resolves to its latest checkpoint (written by tf.train.CheckpointManager).
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(backbone=source), str(tmp_path / "m"), 1)
  manager.save()
  resnet.load_backbone_checkpoint(target, str(tmp_path / "m"))


def test_checkpoint_errors_name_the_problem(tmp_path):
  path = resnet.save_backbone_checkpoint(built_backbone(18), str(tmp_path / "r18"))
  deeper = built_backbone(34)
  with pytest.raises(ValueError, match="does not match a ResNet-34 backbone"):
    resnet.load_backbone_checkpoint(deeper, path)
  with pytest.raises(ValueError, match="not found"):
    resnet.load_backbone_checkpoint(deeper, str(tmp_path / "missing"))
  unbuilt = resnet.ResNet(depth=18)
  with pytest.raises(ValueError, match="build the backbone"):
    resnet.load_backbone_checkpoint(unbuilt, path)


def test_keras_applications_conversion_matches_keras_outputs(r50_stride_in_1x1):
  keras_model = tf_keras.applications.ResNet50(include_top=False, weights=None,
                                               input_shape=(None, None, 3))
  rng = np.random.default_rng(0)
  for layer in keras_model.layers:  # random conv biases and BN statistics
    if isinstance(layer, tf_keras.layers.BatchNormalization):
      shape = layer.gamma.shape
      layer.set_weights([rng.uniform(0.5, 1.5, shape), rng.normal(0, 0.1, shape),
                         rng.normal(0, 0.1, shape), rng.uniform(0.5, 2.0, shape)])
    elif isinstance(layer, tf_keras.layers.Conv2D):
      layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))
  mean_rgb = resnet.KERAS_CAFFE_MEAN_BGR[::-1]
  stddev_rgb = (58.4, 57.1, 57.4)
  backbone = r50_stride_in_1x1
  # The default layout (torchvision, Model Garden) strides in the 3x3 conv instead.
  default = resnet.ResNet(depth=50)
  assert default.blocks(3)[0].kernel_sizes_and_strides == ((1, 1), (3, 2), (1, 1))
  assert backbone.blocks(3)[0].kernel_sizes_and_strides == ((1, 2), (3, 1), (1, 1))
  with pytest.raises(ValueError, match="stride_in_1x1"):
    resnet.convert_keras_applications_resnet(keras_model, default, mean_rgb, stddev_rgb)
  resnet.convert_keras_applications_resnet(keras_model, backbone, mean_rgb, stddev_rgb)
  ends = tf_keras.Model(keras_model.input, [keras_model.get_layer(n).output for n in
                                            ("conv3_block4_out", "conv4_block6_out",
                                             "conv5_block3_out")])
  images = rng.uniform(0, 255, (1, 64, 48, 3)).astype(np.float32)
  expected = ends(tf_keras.applications.resnet.preprocess_input(images.copy()))
  ours = backbone((images - np.float32(mean_rgb)) / np.float32(stddev_rgb), training=False)
  for level, want in zip((3, 4, 5), expected):
    scale = np.abs(want.numpy()).max()
    np.testing.assert_allclose(ours[level].numpy(), want.numpy(), atol=1e-5 * scale)
