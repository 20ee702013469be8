"""The one place that maps the config tree to model constructors.

Library classes take explicit typed arguments; these functions unpack
`retinanet.config` sections into them. Also the helpers a trainer needs for
ImageNet initialization and fine-tuning to a different class count.
"""
from __future__ import annotations

from typing import List, Tuple

import tensorflow as tf
import tf_keras

from retinanet.config import BackboneConfig, FpnConfig, ModelConfig, NormConfig
from retinanet.modeling import mobilenet_v3, resnet
from retinanet.modeling.fpn import FPN
from retinanet.modeling.heads import RetinaNetHead, prior_probability_bias
from retinanet.modeling.retinanet_model import BOX_CODE_SIZE, RetinaNetModel
from retinanet.ops import anchors as anchor_ops


def build_anchors(model_config: ModelConfig) -> anchor_ops.Anchors:
  """The anchor layout of a model config: the one definition used by training
  targets, evaluation and export (they must agree anchor for anchor)."""
  a = model_config.anchors
  return anchor_ops.Anchors(
      image_size=tuple(model_config.input_size), min_level=model_config.fpn.min_level,
      max_level=model_config.fpn.max_level, anchor_size=a.anchor_size,
      scales_per_octave=a.scales_per_octave, aspect_ratios=tuple(a.aspect_ratios))


MOBILENET_V3_TYPES = {"mobilenet_v3_large": "large", "mobilenet_v3_small": "small"}


def build_backbone(backbone_config: BackboneConfig, norm_config: NormConfig,
                   padding: str = "symmetric") -> tf_keras.Model:
  """The backbone of `model.backbone` and `model.norm` (weights not loaded here):
  a ResNet or a MobileNetV3, either returning {3: C3, 4: C4, 5: C5}."""
  if backbone_config.type in MOBILENET_V3_TYPES:
    return mobilenet_v3.MobileNetV3(
        variant=MOBILENET_V3_TYPES[backbone_config.type],
        width_multiplier=backbone_config.width_multiplier,
        minimalistic=backbone_config.minimalistic,
        freeze_stem_and_first_stage=backbone_config.freeze_stem_and_first_stage,
        freeze_batch_norm=backbone_config.freeze_batch_norm,
        norm_momentum=norm_config.momentum,
        norm_epsilon=norm_config.epsilon,
        use_sync_bn=norm_config.use_sync_bn,
        padding=padding)
  return resnet.ResNet(
      depth=backbone_config.depth,
      freeze_stem_and_first_stage=backbone_config.freeze_stem_and_first_stage,
      freeze_batch_norm=backbone_config.freeze_batch_norm,
      stride_in_1x1=backbone_config.stride_in_1x1,
      width_multiplier=backbone_config.width_multiplier,
      norm_momentum=norm_config.momentum,
      norm_epsilon=norm_config.epsilon,
      use_sync_bn=norm_config.use_sync_bn,
      padding=padding)


def build_fpn(fpn_config: FpnConfig, norm_config: NormConfig, padding: str = "symmetric") -> FPN:
  return FPN(
      min_level=fpn_config.min_level,
      max_level=fpn_config.max_level,
      num_channels=fpn_config.num_channels,
      p6_source=fpn_config.p6_source,
      use_batch_norm=fpn_config.use_batch_norm,
      use_group_norm=fpn_config.use_group_norm,
      group_norm_groups=norm_config.group_norm_groups,
      norm_momentum=norm_config.momentum,
      norm_epsilon=norm_config.epsilon,
      use_sync_bn=norm_config.use_sync_bn,
      padding=padding)


def build_heads(model_config: ModelConfig) -> Tuple[RetinaNetHead, RetinaNetHead]:
  """(class head, box head); the class prediction bias encodes head.prior_probability."""
  head, norm, fpn = model_config.head, model_config.norm, model_config.fpn
  common = dict(
      num_anchors=model_config.num_anchors_per_location,
      num_convs=head.num_convs,
      num_channels=head.num_channels,
      min_level=fpn.min_level,
      max_level=fpn.max_level,
      use_batch_norm=head.use_batch_norm,
      use_group_norm=head.use_group_norm,
      group_norm_groups=norm.group_norm_groups,
      norm_momentum=norm.momentum,
      norm_epsilon=norm.epsilon,
      use_sync_bn=norm.use_sync_bn,
      separable=head.separable)
  class_head = RetinaNetHead(
      num_outputs_per_anchor=model_config.num_classes,
      prediction_bias=prior_probability_bias(head.prior_probability),
      name="class_head", **common)
  box_head = RetinaNetHead(num_outputs_per_anchor=BOX_CODE_SIZE, prediction_bias=0.0,
                           name="box_head", **common)
  return class_head, box_head


# Side of the zeros image that creates the variables: weights do not depend on
# the input size, and a tiny eager pass is ~10x faster than a symbolic
# `Model.build` at 640x640 (which runs autograph over every layer).
_BUILD_IMAGE_SIDE = 64


def build_model(model_config: ModelConfig) -> RetinaNetModel:
  """A RetinaNetModel with all variables created (one tiny inference-mode pass).

  Build it inside the distribution strategy scope and mixed-precision policy
  of the trainer. Backbone init weights are loaded by `task.initialize_backbone`.
  """
  class_head, box_head = build_heads(model_config)
  model = RetinaNetModel(
      backbone=build_backbone(model_config.backbone, model_config.norm, model_config.padding),
      fpn=build_fpn(model_config.fpn, model_config.norm, model_config.padding),
      class_head=class_head,
      box_head=box_head)
  model(tf.zeros([1, _BUILD_IMAGE_SIDE, _BUILD_IMAGE_SIDE, 3]), training=False)
  return model


def class_prediction_variables(model: RetinaNetModel) -> List[tf.Variable]:
  """[kernel, bias] of the class head's final conv ([pointwise kernel, bias] when
  separable), the only variables whose shape depends on num_classes: skip them when restoring a checkpoint trained with a
  different class count, then leave them at (or reset them to) their init."""
  return model.class_head.output_dependent_variables()


def reinitialize_class_prediction(model: RetinaNetModel) -> None:
  """Re-draws the class prediction kernel (N(0, 0.01); the pointwise kernel of a separable
  head) and resets its bias to the prior."""
  layer = model.class_head.prediction
  kernel, bias = class_prediction_variables(model)
  kernel_init = (layer.pointwise_initializer if model.class_head.separable
                 else layer.kernel_initializer)
  for variable, init in ((kernel, kernel_init), (bias, layer.bias_initializer)):
    # A new instance: an unseeded tf_keras initializer repeats its first draw.
    fresh = type(init).from_config(init.get_config())
    variable.assign(fresh(variable.shape, variable.dtype))
