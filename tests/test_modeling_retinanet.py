"""The assembled RetinaNet: shapes for every depth, output ordering, mixed
precision, parameter counts against published figures, factory helpers."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from retinanet import config as config_lib
from retinanet import factory
from retinanet.modeling import resnet
from retinanet.modeling.retinanet_model import BOX_OUTPUTS, CLASS_OUTPUTS
from retinanet.ops.anchors import Anchors
from retinanet import task
from tests.test_modeling_resnet import num_params, paper_param_counts

# Published trainable-parameter counts of RetinaNet R50-FPN, 91 classes, 9 anchors:
MODEL_GARDEN_R50_91 = 34_091_159  # P6 from P5, BN in FPN and heads, every conv biased
TORCHVISION_R50_91 = 34_014_999   # same network with frozen (non-parameter) BN, no BN after FPN/heads


def fpn_param_count(c, f, min_level, max_level, p6_source, bn):
  """Trainable FPN weights by hand: laterals + 3x3 outputs + stride-2 coarse levels."""
  top = min(5, max_level)
  n = sum(c[l] * f + f + 9 * f * f + f for l in range(min_level, top + 1))
  for level in range(top + 1, max_level + 1):
    cin = c[5] if (level == 6 and p6_source == "c5") else f
    n += 9 * cin * f + f
  return n + (2 * f * (max_level - min_level + 1) if bn else 0)


def head_param_count(f, h, num_convs, a, k, num_levels, bn):
  n, cin = 0, f
  for _ in range(num_convs):
    n += 9 * cin * h + h
    cin = h
  n += 9 * cin * a * k + a * k
  return n + (2 * h * num_convs * num_levels if bn else 0)


def expected_trainable(m: config_lib.ModelConfig) -> int:
  weights, bn = paper_param_counts(m.backbone.depth)
  bottleneck = m.backbone.depth >= 50
  c = {l: w * (4 if bottleneck else 1) for l, w in zip((3, 4, 5), (128, 256, 512))}
  levels = m.fpn.max_level - m.fpn.min_level + 1
  a = len(m.anchors.aspect_ratios) * m.anchors.scales_per_octave
  heads = sum(head_param_count(m.fpn.num_channels, m.head.num_channels, m.head.num_convs, a, k,
                               levels, m.head.use_batch_norm) for k in (m.num_classes, 4))
  return (weights + 2 * bn + heads +
          fpn_param_count(c, m.fpn.num_channels, m.fpn.min_level, m.fpn.max_level,
                          m.fpn.p6_source, m.fpn.use_batch_norm))


def small_config(**overrides) -> config_lib.ModelConfig:
  m = config_lib.ModelConfig()
  m.num_classes = 3
  m.input_size = (128, 128)
  m.backbone.depth = 18
  m.backbone.freeze_stem_and_first_stage = False
  m.fpn.num_channels = 16
  m.head.num_channels = 8
  m.head.num_convs = 1
  for key, value in overrides.items():
    section, _, name = key.rpartition(".")
    setattr(getattr(m, section) if section else m, name, value)
  config_lib.validate(config_lib.ExperimentConfig(model=m))
  return m


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_every_depth_shapes_and_param_count(depth):
  m = small_config(**{"backbone.depth": depth})
  model = factory.build_model(m)
  images = tf.zeros([2, 64, 96, 3])
  features = model.backbone(images, training=False)
  for level, x in features.items():
    assert x.shape[1:] == (64 // 2**level, 96 // 2**level, resnet.output_channels(depth)[level])
  out = model(images, training=False)
  anchors = Anchors(image_size=(64, 96), min_level=3, max_level=7, anchor_size=4.0,
                    scales_per_octave=3, aspect_ratios=(0.5, 1.0, 2.0))
  assert out[CLASS_OUTPUTS].shape == (2, anchors.num_anchors, 3)
  assert out[BOX_OUTPUTS].shape == (2, anchors.num_anchors, 4)
  assert out[CLASS_OUTPUTS].dtype == tf.float32 and out[BOX_OUTPUTS].dtype == tf.float32
  assert num_params(model.trainable_variables) == expected_trainable(m)


def test_outputs_concatenate_levels_then_locations_then_anchors():
  m = small_config(**{"fpn.min_level": 4, "fpn.max_level": 6,
                      "anchors.aspect_ratios": (1.0, 2.0), "anchors.scales_per_octave": 1})
  model = factory.build_model(m)
  images = tf.random.stateless_normal([2, 64, 128, 3], seed=[7, 8])
  out = model(images, training=False)
  class_levels, box_levels = model.call_per_level(images, training=False)
  a, k = 2, 3
  offset = 0
  for level in (4, 5, 6):
    cls, box = class_levels[level].numpy(), box_levels[level].numpy()
    h, w = cls.shape[1:3]
    assert (h, w) == (64 // 2**level, 128 // 2**level)
    for y, x, anchor in [(0, 0, 0), (0, 1, 1), (h - 1, w - 1, 1), (h - 1, 0, 0)]:
      row = offset + (y * w + x) * a + anchor
      np.testing.assert_allclose(out[CLASS_OUTPUTS][:, row].numpy(),
                                 cls[:, y, x, anchor * k:(anchor + 1) * k], rtol=1e-6)
      np.testing.assert_allclose(out[BOX_OUTPUTS][:, row].numpy(),
                                 box[:, y, x, anchor * 4:(anchor + 1) * 4], rtol=1e-6)
    offset += h * w * a
  assert out[CLASS_OUTPUTS].shape[1] == offset


def test_mixed_precision_outputs_are_float32():
  tf_keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    model = factory.build_model(small_config(**{"head.use_batch_norm": True}))
    images = tf.zeros([1, 64, 64, 3])
    out = model(images, training=False)
    class_levels, _ = model.call_per_level(images, training=False)
  finally:
    tf_keras.mixed_precision.set_global_policy("float32")
  assert out[CLASS_OUTPUTS].dtype == tf.float32 and out[BOX_OUTPUTS].dtype == tf.float32
  assert class_levels[3].dtype == tf.float16
  assert model.class_head.prediction.kernel.dtype == tf.float32  # float32 master weights
  np.testing.assert_allclose(tf.sigmoid(out[CLASS_OUTPUTS]).numpy(), 0.01, rtol=1e-2)


def test_resnet50_fpn_parameter_count_matches_published_figures():
  m = config_lib.ModelConfig()
  m.num_classes = 91
  m.backbone.freeze_stem_and_first_stage = False
  m.fpn.p6_source = "p5"
  m.fpn.use_batch_norm = True
  m.head.use_batch_norm = True
  # The hand formula reproduces both published counts...
  assert expected_trainable(m) == MODEL_GARDEN_R50_91
  m_tv = dataclasses.replace(m, fpn=dataclasses.replace(m.fpn, use_batch_norm=False),
                             head=dataclasses.replace(m.head, use_batch_norm=False))
  backbone_bn_channels = paper_param_counts(50)[1]
  assert expected_trainable(m_tv) - 2 * backbone_bn_channels == TORCHVISION_R50_91
  # ...and the built model has exactly the formula's count.
  model = factory.build_model(m)
  trainable = num_params(model.trainable_variables)
  assert abs(trainable - MODEL_GARDEN_R50_91) <= 0.01 * MODEL_GARDEN_R50_91
  assert trainable == MODEL_GARDEN_R50_91
  without_bn = num_params(v for v in model.trainable_variables
                          if not any(s in v.name for s in ("/bn", "stem_bn", "shortcut_bn")))
  assert without_bn == TORCHVISION_R50_91


def test_factory_maps_flags():
  m = small_config(**{"backbone.freeze_stem_and_first_stage": True, "norm.use_sync_bn": True,
                      "norm.momentum": 0.9, "norm.epsilon": 1e-4, "fpn.p6_source": "p5",
                      "fpn.use_batch_norm": True, "head.use_batch_norm": True,
                      "head.num_convs": 2})
  model = factory.build_model(m)
  assert num_params(model.trainable_variables) == expected_trainable(m) - (
      7 * 7 * 3 * 64 + 2 * 64 + 2 * 2 * (9 * 64 * 64 + 2 * 64))
  bns = [l for l in model.submodules if isinstance(l, tf_keras.layers.BatchNormalization)]
  assert len(bns) == 20 + 5 + 2 * 2 * 5  # backbone R18 + FPN levels + per-level head BN
  assert all(bn.synchronized and bn.momentum == 0.9 and bn.epsilon == 1e-4 for bn in bns)
  assert model.fpn.coarse_p6.kernel.shape == (3, 3, 16, 16)
  assert (model.min_level, model.max_level, model.num_classes,
          model.num_anchors_per_location) == (3, 7, 3, 9)


def test_class_prediction_helpers():
  m = small_config()
  model = factory.build_model(m)
  kernel, bias = factory.class_prediction_variables(model)
  assert kernel.shape == (3, 3, 8, 9 * 3) and bias.shape == (9 * 3,)
  box_kernel = model.box_head.prediction.kernel
  assert box_kernel.shape == (3, 3, 8, 9 * 4)
  initial = kernel.numpy()
  kernel.assign(tf.ones_like(kernel))
  bias.assign(tf.zeros_like(bias))
  factory.reinitialize_class_prediction(model)
  assert not np.allclose(kernel.numpy(), initial)  # a new draw, not the first one again
  np.testing.assert_allclose(tf.sigmoid(bias).numpy(), 0.01, rtol=1e-6)
  assert np.std(kernel.numpy()) == pytest.approx(0.01, rel=0.2)
  assert "class_head/prediction" in kernel.name


def test_initialize_backbone_from_checkpoint(tmp_path):
  m = small_config()
  source = factory.build_model(m)
  for v in source.backbone.variables:
    v.assign(tf.fill(v.shape, 0.5))
  path = resnet.save_backbone_checkpoint(source.backbone, str(tmp_path / "ckpt"))
  target = factory.build_model(m)
  assert not task.initialize_backbone(target, m.backbone.init_checkpoint)  # "" = random init
  m.backbone.init_checkpoint = path
  assert task.initialize_backbone(target, m.backbone.init_checkpoint)
  for a, b in zip(source.backbone.variables, target.backbone.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert not np.allclose(source.fpn.output_p3.kernel.numpy(), target.fpn.output_p3.kernel.numpy())
