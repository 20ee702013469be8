"""Feature pyramid network (Lin et al. 2017) producing P{min_level}..P{max_level}.

P_l for l <= 5: lateral 1x1 conv of C_l plus the 2x nearest-upsampled P_{l+1}
(top-down), then a 3x3 output conv. P6 is a 3x3 stride-2 conv of C5 (the
RetinaNet paper, Detectron) or of P5 (torchvision, Model Garden); every further
level is a 3x3 stride-2 conv of relu(previous level). Optional batch norm
(Model Garden) or group norm on every output level. All convs have a bias, as
in Model Garden and torchvision, so parameter counts compare one to one.

Variable names: fpn/lateral_p{l}, fpn/output_p{l}, fpn/coarse_p{l}, fpn/bn_p{l}, fpn/gn_p{l}.
"""
from __future__ import annotations

from typing import Dict, Optional

import tensorflow as tf
import tf_keras

from retinanet.modeling.resnet import batch_norm, group_norm

BACKBONE_MAX_LEVEL = 5
P6_SOURCES = ("c5", "p5")


def upsample2x_nearest(x: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
  """Nearest 2x upsampling of `x` [B, h, w, C], cropped to the spatial size of `like`.

  Cropping handles odd sizes: a stride-2 level of an odd map has ceil(h / 2) rows.
  """
  up = tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)
  shape = tf.shape(like)
  return up[:, :shape[1], :shape[2], :]


class FPN(tf_keras.layers.Layer):
  """{3: C3, 4: C4, 5: C5} -> {min_level: P_min, ..., max_level: P_max}, each `num_channels` wide."""

  def __init__(self, *, min_level: int = 3, max_level: int = 7, num_channels: int = 256,
               p6_source: str = "c5", use_batch_norm: bool = False,
               use_group_norm: bool = False, group_norm_groups: int = 32,
               norm_momentum: float = 0.99, norm_epsilon: float = 1e-3,
               use_sync_bn: bool = False, padding: str = "symmetric", name: str = "fpn",
               **kwargs):
    super().__init__(name=name, **kwargs)
    if not 3 <= min_level <= BACKBONE_MAX_LEVEL or max_level < min_level:
      raise ValueError(f"FPN needs 3 <= min_level <= {BACKBONE_MAX_LEVEL} and "
                       f"max_level >= min_level, got min_level={min_level}, max_level={max_level}")
    if p6_source not in P6_SOURCES:
      raise ValueError(f"FPN p6_source={p6_source!r} is not one of {P6_SOURCES}")
    if use_batch_norm and use_group_norm:
      raise ValueError("FPN: use_batch_norm and use_group_norm are exclusive")
    self._args = dict(min_level=min_level, max_level=max_level, num_channels=num_channels,
                      p6_source=p6_source, use_batch_norm=use_batch_norm,
                      use_group_norm=use_group_norm, group_norm_groups=group_norm_groups,
                      norm_momentum=norm_momentum, norm_epsilon=norm_epsilon,
                      use_sync_bn=use_sync_bn, padding=padding)
    self.padding = padding  # of the stride-2 coarse convs: see resnet.PADDINGS
    self.min_level = min_level
    self.max_level = max_level
    self.p6_source = p6_source
    self.top_backbone_level = min(max_level, BACKBONE_MAX_LEVEL)
    conv = dict(filters=num_channels, kernel_initializer="glorot_uniform")
    # Layers are attributes named like the layer, so checkpoint keys read fpn/lateral_p3/...
    for level in range(min_level, self.top_backbone_level + 1):
      setattr(self, f"lateral_p{level}",
              tf_keras.layers.Conv2D(kernel_size=1, name=f"lateral_p{level}", **conv))
      setattr(self, f"output_p{level}", tf_keras.layers.Conv2D(
          kernel_size=3, padding="same", name=f"output_p{level}", **conv))
    for level in range(self.top_backbone_level + 1, max_level + 1):
      # Either padding keeps sizes at ceil(h / 2) like the backbone (symmetric: see call).
      setattr(self, f"coarse_p{level}", tf_keras.layers.Conv2D(
          kernel_size=3, strides=2, padding="valid" if padding == "symmetric" else "same",
          name=f"coarse_p{level}", **conv))
    self.use_batch_norm = use_batch_norm
    self.use_group_norm = use_group_norm
    for level in range(min_level, max_level + 1):
      if use_batch_norm:
        setattr(self, f"bn_p{level}", batch_norm(name=f"bn_p{level}", momentum=norm_momentum,
                                                 epsilon=norm_epsilon, synchronized=use_sync_bn))
      if use_group_norm:
        setattr(self, f"gn_p{level}", group_norm(name=f"gn_p{level}", groups=group_norm_groups,
                                                 epsilon=norm_epsilon))

  def call(self, features: Dict[int, tf.Tensor],
           training: Optional[bool] = None) -> Dict[int, tf.Tensor]:
    top = self.top_backbone_level
    missing = [l for l in range(self.min_level, top + 1) if l not in features]
    if missing:
      raise ValueError(f"FPN needs backbone levels {list(range(self.min_level, top + 1))}, "
                       f"missing {missing}")
    merged = {top: getattr(self, f"lateral_p{top}")(features[top])}
    for level in range(top - 1, self.min_level - 1, -1):
      lateral = getattr(self, f"lateral_p{level}")(features[level])
      merged[level] = lateral + upsample2x_nearest(merged[level + 1], lateral)
    pyramid = {level: getattr(self, f"output_p{level}")(merged[level]) for level in merged}
    for level in range(top + 1, self.max_level + 1):
      if level == BACKBONE_MAX_LEVEL + 1:
        source = features[BACKBONE_MAX_LEVEL] if self.p6_source == "c5" else pyramid[level - 1]
      else:
        source = tf.nn.relu(pyramid[level - 1])
      if self.padding == "symmetric":
        source = tf.pad(source, [[0, 0], [1, 1], [1, 1], [0, 0]])
      pyramid[level] = getattr(self, f"coarse_p{level}")(source)
    if self.use_batch_norm:
      pyramid = {level: getattr(self, f"bn_p{level}")(x, training=training)
                 for level, x in pyramid.items()}
    if self.use_group_norm:
      pyramid = {level: getattr(self, f"gn_p{level}")(x) for level, x in pyramid.items()}
    return {level: pyramid[level] for level in range(self.min_level, self.max_level + 1)}

  def get_config(self) -> dict:
    return {**super().get_config(), **self._args}
