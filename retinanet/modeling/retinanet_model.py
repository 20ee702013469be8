"""The RetinaNet detector network: backbone -> FPN -> shared class and box heads.

Outputs are raw: class logits (sigmoid, no background column) and box
regression deltas for the box coder of `retinanet.ops`. Anchor order matches
`retinanet.ops.anchors`: levels min..max, then row-major (y, x), then the A
anchors of a location.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import tensorflow as tf
import tf_keras

from retinanet.modeling.fpn import FPN
from retinanet.modeling.heads import RetinaNetHead

CLASS_OUTPUTS = "class_outputs"
BOX_OUTPUTS = "box_outputs"
BOX_CODE_SIZE = 4


def flatten_level(x: tf.Tensor, num_outputs_per_anchor: int) -> tf.Tensor:
  """[B, H, W, A * K] -> [B, H * W * A, K] (row-major locations, then anchors)."""
  return tf.reshape(x, [tf.shape(x)[0], -1, num_outputs_per_anchor])


class RetinaNetModel(tf_keras.Model):
  """images [B, H, W, 3] (float, already normalized) ->
  {"class_outputs": float32 [B, N, num_classes] logits, "box_outputs": float32 [B, N, 4]}.

  The backbone is any model returning {3: C3, 4: C4, 5: C5} (ResNet, MobileNetV3).

  N = sum over levels of ceil(H / 2**l) * ceil(W / 2**l) * A. Outputs are cast
  to float32 last, so the network itself may run in mixed precision.
  """

  def __init__(self, *, backbone: tf_keras.Model, fpn: FPN, class_head: RetinaNetHead,
               box_head: RetinaNetHead, name: str = "retinanet", **kwargs):
    super().__init__(name=name, **kwargs)
    if class_head.num_anchors != box_head.num_anchors:
      raise ValueError(f"class head has {class_head.num_anchors} anchors per location but the "
                       f"box head has {box_head.num_anchors}")
    if box_head.num_outputs_per_anchor != BOX_CODE_SIZE:
      raise ValueError(f"box head must predict {BOX_CODE_SIZE} values per anchor, "
                       f"got {box_head.num_outputs_per_anchor}")
    for head in (class_head, box_head):
      if (head.min_level, head.max_level) != (fpn.min_level, fpn.max_level):
        raise ValueError(f"{head.name} levels {head.min_level}..{head.max_level} differ from "
                         f"the FPN levels {fpn.min_level}..{fpn.max_level}")
    self.backbone = backbone
    self.fpn = fpn
    self.class_head = class_head
    self.box_head = box_head
    self.min_level = fpn.min_level
    self.max_level = fpn.max_level
    self.num_classes = class_head.num_outputs_per_anchor
    self.num_anchors_per_location = class_head.num_anchors

  @tf.autograph.experimental.do_not_convert
  def __call__(self, *args, **kwargs):
    """Keras' call, never converted by autograph: the network has no data-dependent Python
    control flow, and converting every layer's call only costs tracing time (a tiny
    model's inference graph traced in 18 s with it, 1 s without, on this CPU)."""
    return super().__call__(*args, **kwargs)

  def call_per_level(self, images: tf.Tensor, training: Optional[bool] = None
                     ) -> Tuple[Dict[int, tf.Tensor], Dict[int, tf.Tensor]]:
    """({level: class logits [B, H_l, W_l, A * num_classes]}, {level: [B, H_l, W_l, A * 4]}),
    in the compute dtype (float16 / bfloat16 under mixed precision)."""
    features = self.backbone(images, training=training)
    pyramid = self.fpn(features, training=training)
    return (self.class_head(pyramid, training=training),
            self.box_head(pyramid, training=training))

  def call(self, images: tf.Tensor, training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    class_levels, box_levels = self.call_per_level(images, training=training)
    levels = range(self.min_level, self.max_level + 1)
    class_outputs = tf.concat(
        [flatten_level(class_levels[l], self.num_classes) for l in levels], axis=1)
    box_outputs = tf.concat(
        [flatten_level(box_levels[l], BOX_CODE_SIZE) for l in levels], axis=1)
    return {CLASS_OUTPUTS: tf.cast(class_outputs, tf.float32),
            BOX_OUTPUTS: tf.cast(box_outputs, tf.float32)}
