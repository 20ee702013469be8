"""RetinaNet class and box subnets (Lin et al. 2017, section 4).

One head is `num_convs` 3x3 convs of `num_channels` + ReLU, then a 3x3
prediction conv with A * K outputs per location. The conv layers are the same
objects on every pyramid level (shared weights). With `use_batch_norm`, each
level has its own batch norm after each conv (Model Garden's choice): the
levels' activation statistics differ, so one shared moving average would fit
none of them at inference time. With `use_group_norm` a group norm follows
each conv and, having no moving statistics, is shared by all levels like the
convs (torchvision's retinanet_resnet50_fpn_v2, FCOS, ATSS). All convs keep
their bias (as Model Garden).
Kernels are initialized from N(0, 0.01); the class prediction bias is
`prior_probability_bias(p)`, so every anchor starts at foreground probability p.
With `separable`, every 3x3 conv (tower and prediction) is depthwise-separable
(a 3x3 depthwise conv then a 1x1 pointwise conv), the light head of SSDLite and
Model Garden's mobile RetinaNet (`use_separable_conv`). Depthwise kernels and the
tower's pointwise kernels are He-normal (fan-out, as Model Garden); the prediction's
pointwise kernel is N(0, 0.01) like the plain prediction conv. (Model Garden draws
both prediction factors from N(0, 0.03): each factor's gradient then scales with the
other's tiny weights, and on the sample data the class loss fell at half the speed.)

Variable names: {name}/conv{i}/..., {name}/bn{i}_p{level}/..., {name}/gn{i}/...,
{name}/prediction/...
with i = 1..num_convs and name "class_head" or "box_head".
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional

import tensorflow as tf
import tf_keras

from retinanet.modeling.resnet import batch_norm, group_norm

KERNEL_STDDEV = 0.01


def prior_probability_bias(prior_probability: float) -> float:
  """-log((1 - p) / p): the logit whose sigmoid is p."""
  if not 0.0 < prior_probability < 1.0:
    raise ValueError(f"prior_probability={prior_probability} must be in (0, 1)")
  return -math.log((1.0 - prior_probability) / prior_probability)


class RetinaNetHead(tf_keras.layers.Layer):
  """{level: [B, H, W, C]} -> {level: [B, H, W, num_anchors * num_outputs_per_anchor]}.

  Output channel a * num_outputs_per_anchor + k is output k of anchor a, so a
  reshape to [B, H * W * num_anchors, num_outputs_per_anchor] lists the anchors
  of a location consecutively.
  """

  def __init__(self, *, num_anchors: int, num_outputs_per_anchor: int, num_convs: int = 4,
               num_channels: int = 256, min_level: int = 3, max_level: int = 7,
               use_batch_norm: bool = False, use_group_norm: bool = False,
               group_norm_groups: int = 32, norm_momentum: float = 0.99,
               norm_epsilon: float = 1e-3, use_sync_bn: bool = False,
               prediction_bias: float = 0.0, separable: bool = False, name: str = "head",
               **kwargs):
    super().__init__(name=name, **kwargs)
    if num_anchors < 1 or num_outputs_per_anchor < 1 or num_convs < 0 or num_channels < 1:
      raise ValueError(f"{name}: num_anchors={num_anchors}, num_outputs_per_anchor="
                       f"{num_outputs_per_anchor}, num_convs={num_convs}, num_channels="
                       f"{num_channels} must be positive (num_convs may be 0)")
    if use_batch_norm and use_group_norm:
      raise ValueError(f"{name}: use_batch_norm and use_group_norm are exclusive")
    self._args = dict(num_anchors=num_anchors, num_outputs_per_anchor=num_outputs_per_anchor,
                      num_convs=num_convs, num_channels=num_channels, min_level=min_level,
                      max_level=max_level, use_batch_norm=use_batch_norm,
                      use_group_norm=use_group_norm, group_norm_groups=group_norm_groups,
                      norm_momentum=norm_momentum, norm_epsilon=norm_epsilon,
                      use_sync_bn=use_sync_bn, prediction_bias=prediction_bias,
                      separable=separable)
    self.num_anchors = num_anchors
    self.num_outputs_per_anchor = num_outputs_per_anchor
    self.num_convs = num_convs
    self.min_level = min_level
    self.max_level = max_level
    self.use_batch_norm = use_batch_norm
    self.use_group_norm = use_group_norm
    # A fresh initializer per layer: an unseeded tf_keras initializer instance
    # returns the same values on every call, which would clone conv1 into conv2.
    init = lambda: tf_keras.initializers.RandomNormal(stddev=KERNEL_STDDEV)
    self.separable = separable

    def conv3x3(filters: int, name: str, bias_initializer) -> tf_keras.layers.Layer:
      if separable:
        he = lambda: tf_keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")
        return tf_keras.layers.SeparableConv2D(
            filters, 3, padding="same", depthwise_initializer=he(),
            pointwise_initializer=init() if name == "prediction" else he(),
            bias_initializer=bias_initializer, name=name)
      return tf_keras.layers.Conv2D(filters, 3, padding="same", kernel_initializer=init(),
                                    bias_initializer=bias_initializer, name=name)

    # Attributes named like the layers: checkpoint keys read class_head/conv1/...
    for i in range(1, num_convs + 1):
      setattr(self, f"conv{i}", conv3x3(num_channels, f"conv{i}", "zeros"))
      if use_batch_norm:
        for level in range(min_level, max_level + 1):
          setattr(self, f"bn{i}_p{level}", batch_norm(
              name=f"bn{i}_p{level}", momentum=norm_momentum, epsilon=norm_epsilon,
              synchronized=use_sync_bn))
      if use_group_norm:
        setattr(self, f"gn{i}", group_norm(name=f"gn{i}", groups=group_norm_groups,
                                           epsilon=norm_epsilon))
    self.prediction = conv3x3(num_anchors * num_outputs_per_anchor, "prediction",
                              tf_keras.initializers.Constant(prediction_bias))

  def output_dependent_variables(self) -> List[tf.Variable]:
    """The prediction variables whose shape depends on the number of outputs
    ([kernel, bias]; [pointwise_kernel, bias] when separable)."""
    p = self.prediction
    return [p.pointwise_kernel if self.separable else p.kernel, p.bias]

  def conv_layers(self) -> List[tf_keras.layers.Layer]:
    """The shared 3x3 tower convs, in order."""
    return [getattr(self, f"conv{i}") for i in range(1, self.num_convs + 1)]

  def call(self, features: Dict[int, tf.Tensor],
           training: Optional[bool] = None) -> Dict[int, tf.Tensor]:
    outputs = {}
    for level in range(self.min_level, self.max_level + 1):
      if level not in features:
        raise ValueError(f"{self.name}: no pyramid level {level} in the features "
                         f"(have {sorted(features)})")
      x = features[level]
      for i, conv in enumerate(self.conv_layers(), start=1):
        x = conv(x)
        if self.use_batch_norm:
          x = getattr(self, f"bn{i}_p{level}")(x, training=training)
        if self.use_group_norm:
          x = getattr(self, f"gn{i}")(x)
        x = tf.nn.relu(x)
      outputs[level] = self.prediction(x)
    return outputs

  def get_config(self) -> dict:
    return {**super().get_config(), **self._args}
