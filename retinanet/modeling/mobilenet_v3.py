r"""MobileNetV3-Large / -Small backbones (Howard et al. 2019) returning {3: C3, 4: C4, 5: C5}.

The network of `tf_keras.applications.MobileNetV3Large/Small(include_top=False)`,
block for block: a 3x3 stride-2 stem conv (16 channels at every width), then
inverted residual blocks (1x1 expand, k x k depthwise, optional
squeeze-and-excite, 1x1 linear projection, identity shortcut when the shape
is kept), then a 1x1 conv to 6x the last block's channels. Activations are
ReLU or hard-swish, x * relu6(x + 3) / 6. `width_multiplier` (Keras' alpha)
scales every block's channels, rounded to multiples of 8 (`make_divisible`);
`minimalistic` drops squeeze-and-excite, hard-swish and 5x5 kernels (Keras'
"minimalistic" models, for hardware without those ops).

Features: C3 and C4 are the outputs of the last block at stride 8 and 16 (Large:
blocks 5 and 11, Keras layers expanded_conv_5/Add and expanded_conv_11/Add;
Small: blocks 2 and 7); C5 is the final 1x1 conv's activation (the output of
the Keras model), so the parameter count equals Keras' include_top=False model.

Variable names (fine-tuning freezes and restores by these patterns):
  backbone/stem_conv/kernel, backbone/stem_bn/...
  backbone/block{i}/{expand_conv,expand_bn,depthwise_conv,depthwise_bn,se_reduce,
                     se_expand,project_conv,project_bn}/...     i = Keras' block id
  backbone/last_conv/kernel, backbone/last_bn/...

ImageNet weights (nothing is downloaded at run time): take the Keras
applications "no top" h5 file (e.g. weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5,
from https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/) and run
    python -m retinanet.modeling.imagenet_weights \
        --config=coco/retinanet-mobilenetv3large-384-3x-b64-8gpu \
        --weights=path/to/no_top.h5 --output=pretrained/mobilenet_v3_large-imagenet/ckpt
then train with model.backbone.init_checkpoint=pretrained/mobilenet_v3_large-imagenet/ckpt.
Keras feeds these networks x / 127.5 - 1; with input.mean_rgb = input.stddev_rgb =
127.5 (the shipped mobile configs) the mapping is exact, otherwise the input
affine is folded into the stem conv and only the zero padding at the image border differs.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras

from retinanet import config as config_lib
from retinanet.modeling.resnet import batch_norm, fold_keras_batch_norm, freeze_backbone

VARIANTS = ("large", "small")
STEM_CHANNELS = 16
LAST_CONV_EXPANSION = 6
SE_RATIO = 0.25
OUTPUT_LEVELS = (3, 4, 5)
KERAS_INPUT_SCALE = 127.5  # Keras' MobileNetV3 input: x / 127.5 - 1
# "same" (TensorFlow SAME, as Keras pads: imagenet_utils.correct_pad equals SAME on
# even sizes) or "symmetric" (k // 2 on every side); see resnet.PADDINGS.
PADDINGS = config_lib.PADDINGS


@dataclasses.dataclass(frozen=True)
class BlockSpec:
  """One inverted residual block as written in the paper's tables (and Keras').

  kernel None = the variant's large kernel (5x5, 3x3 when minimalistic); se and
  hard_swish apply unless minimalistic.
  """
  expansion: float
  channels: int
  kernel: Optional[int]
  stride: int
  se: bool
  hard_swish: bool


def _b(expansion, channels, kernel, stride, se, hard_swish) -> BlockSpec:
  return BlockSpec(expansion, channels, kernel, stride, se, hard_swish)


# Table 1 (Large) and Table 2 (Small) of the paper, in Keras' order.
BLOCKS: Dict[str, Tuple[BlockSpec, ...]] = {
    "large": (
        _b(1, 16, 3, 1, False, False), _b(4, 24, 3, 2, False, False),
        _b(3, 24, 3, 1, False, False), _b(3, 40, None, 2, True, False),
        _b(3, 40, None, 1, True, False), _b(3, 40, None, 1, True, False),
        _b(6, 80, 3, 2, False, True), _b(2.5, 80, 3, 1, False, True),
        _b(2.3, 80, 3, 1, False, True), _b(2.3, 80, 3, 1, False, True),
        _b(6, 112, 3, 1, True, True), _b(6, 112, 3, 1, True, True),
        _b(6, 160, None, 2, True, True), _b(6, 160, None, 1, True, True),
        _b(6, 160, None, 1, True, True)),
    "small": (
        _b(1, 16, 3, 2, True, False), _b(72 / 16, 24, 3, 2, False, False),
        _b(88 / 24, 24, 3, 1, False, False), _b(4, 40, None, 2, True, True),
        _b(6, 40, None, 1, True, True), _b(6, 40, None, 1, True, True),
        _b(3, 48, None, 1, True, True), _b(3, 48, None, 1, True, True),
        _b(6, 96, None, 2, True, True), _b(6, 96, None, 1, True, True),
        _b(6, 96, None, 1, True, True)),
}


def make_divisible(value: float, divisor: int = 8) -> int:
  """Rounds a channel count to a multiple of `divisor`, never below 90% of it
  (Keras applications' `_depth`, the TF-slim `_make_divisible`)."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * value else rounded


def hard_sigmoid(x: tf.Tensor) -> tf.Tensor:
  return tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


def hard_swish(x: tf.Tensor) -> tf.Tensor:
  return x * hard_sigmoid(x)


def _check_variant(variant: str) -> None:
  if variant not in VARIANTS:
    raise ValueError(f"MobileNetV3 variant {variant!r} is not one of {VARIANTS}")


def block_strides(variant: str) -> List[int]:
  """Output stride of every block (the stem halves the input first)."""
  _check_variant(variant)
  strides, stride = [], 2
  for spec in BLOCKS[variant]:
    stride *= spec.stride
    strides.append(stride)
  return strides


def feature_blocks(variant: str) -> Dict[int, int]:
  """{3: index of the block giving C3, 4: ... C4}: the last block at stride 8 / 16."""
  strides = block_strides(variant)
  return {level: max(i for i, s in enumerate(strides) if s == 2**level) for level in (3, 4)}


def output_channels(variant: str, width_multiplier: float = 1.0) -> Dict[int, int]:
  """{level: channels} of C3..C5."""
  blocks = feature_blocks(variant)
  channels = {level: make_divisible(BLOCKS[variant][i].channels * width_multiplier)
              for level, i in blocks.items()}
  last = make_divisible(BLOCKS[variant][-1].channels * width_multiplier)
  channels[5] = make_divisible(last * LAST_CONV_EXPANSION)
  return channels


def _depthwise(kernel: int, stride: int, padding: str, name: str) -> tf_keras.layers.Layer:
  valid = stride != 1 and padding == "symmetric"  # explicit padding in `_pad`
  return tf_keras.layers.DepthwiseConv2D(kernel, strides=stride,
                                         padding="valid" if valid else "same",
                                         use_bias=False, name=name)


def _pad(x: tf.Tensor, kernel: int, stride: int, padding: str) -> tf.Tensor:
  if stride == 1 or padding == "same":
    return x
  p = kernel // 2
  return tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])


def _pointwise(filters: int, name: str, use_bias: bool = False) -> tf_keras.layers.Conv2D:
  return tf_keras.layers.Conv2D(filters, 1, padding="same", use_bias=use_bias, name=name)


class InvertedResidual(tf_keras.layers.Layer):
  """expand 1x1 -> BN -> act -> depthwise k x k -> BN -> act -> [SE] -> project 1x1 -> BN (+ x)."""

  def __init__(self, *, in_channels: int, expanded: Optional[int], out_channels: int,
               kernel: int, stride: int, se_channels: Optional[int], use_hard_swish: bool,
               norm: dict, padding: str, name: str, **kwargs):
    super().__init__(name=name, **kwargs)
    self.kernel, self.stride, self.padding = kernel, stride, padding
    self.activation = hard_swish if use_hard_swish else tf.nn.relu
    self.expand_conv = _pointwise(expanded, "expand_conv") if expanded else None
    self.expand_bn = batch_norm(name="expand_bn", **norm) if expanded else None
    self.depthwise_conv = _depthwise(kernel, stride, padding, "depthwise_conv")
    self.depthwise_bn = batch_norm(name="depthwise_bn", **norm)
    self.se_reduce = _pointwise(se_channels, "se_reduce", use_bias=True) if se_channels else None
    self.se_expand = (_pointwise(expanded or in_channels, "se_expand", use_bias=True)
                      if se_channels else None)
    self.project_conv = _pointwise(out_channels, "project_conv")
    self.project_bn = batch_norm(name="project_bn", **norm)
    self.residual = stride == 1 and in_channels == out_channels

  def call(self, inputs: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
    x = inputs
    if self.expand_conv is not None:
      x = self.activation(self.expand_bn(self.expand_conv(x), training=training))
    x = self.depthwise_conv(_pad(x, self.kernel, self.stride, self.padding))
    x = self.activation(self.depthwise_bn(x, training=training))
    if self.se_reduce is not None:
      s = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
      s = self.se_expand(tf.nn.relu(self.se_reduce(s)))
      x = x * hard_sigmoid(s)
    x = self.project_bn(self.project_conv(x), training=training)
    return inputs + x if self.residual else x


class MobileNetV3(tf_keras.Model):
  """MobileNetV3 feature extractor: images [B, H, W, 3] -> {3: C3, 4: C4, 5: C5}.

  C_l has spatial size ceil(H / 2**l) x ceil(W / 2**l) (H, W multiples of 32
  in every config). Freezing works as for the ResNet: `freeze_stem_and_first_stage`
  fixes the stem and the blocks at stride <= 4, `freeze_batch_norm` every BN.
  """

  def __init__(self, *, variant: str = "large", width_multiplier: float = 1.0,
               minimalistic: bool = False, freeze_stem_and_first_stage: bool = False,
               freeze_batch_norm: bool = False, norm_momentum: float = 0.99,
               norm_epsilon: float = 1e-3, use_sync_bn: bool = False,
               padding: str = "same", name: str = "backbone", **kwargs):
    super().__init__(name=name, **kwargs)
    _check_variant(variant)
    if width_multiplier <= 0:
      raise ValueError(f"MobileNetV3 width_multiplier={width_multiplier} must be > 0")
    if padding not in PADDINGS:
      raise ValueError(f"MobileNetV3 padding={padding!r} is not one of {PADDINGS}")
    self.variant, self.width_multiplier, self.minimalistic = variant, width_multiplier, minimalistic
    self.padding = padding
    self._args = dict(variant=variant, width_multiplier=width_multiplier,
                      minimalistic=minimalistic,
                      freeze_stem_and_first_stage=freeze_stem_and_first_stage,
                      freeze_batch_norm=freeze_batch_norm, norm_momentum=norm_momentum,
                      norm_epsilon=norm_epsilon, use_sync_bn=use_sync_bn, padding=padding)
    norm = dict(momentum=norm_momentum, epsilon=norm_epsilon, synchronized=use_sync_bn)
    self.activation = tf.nn.relu if minimalistic else hard_swish
    self.stem_conv = tf_keras.layers.Conv2D(
        STEM_CHANNELS, 3, strides=2, padding="valid" if padding == "symmetric" else "same",
        use_bias=False, name="stem_conv")
    self.stem_bn = batch_norm(name="stem_bn", **norm)
    self._block_names: List[str] = []
    in_channels = STEM_CHANNELS
    for i, spec in enumerate(BLOCKS[variant]):
      out_channels = make_divisible(spec.channels * width_multiplier)
      # Keras' first block never expands (its expansion is 1 in both tables).
      expanded = make_divisible(in_channels * spec.expansion) if i > 0 else None
      se = spec.se and not minimalistic
      block = InvertedResidual(
          in_channels=in_channels, expanded=expanded, out_channels=out_channels,
          kernel=spec.kernel or (3 if minimalistic else 5), stride=spec.stride,
          se_channels=make_divisible((expanded or in_channels) * SE_RATIO) if se else None,
          use_hard_swish=spec.hard_swish and not minimalistic, norm=norm, padding=padding,
          name=f"block{i}")
      setattr(self, block.name, block)
      self._block_names.append(block.name)
      in_channels = out_channels
    self.last_conv = _pointwise(make_divisible(in_channels * LAST_CONV_EXPANSION), "last_conv")
    self.last_bn = batch_norm(name="last_bn", **norm)
    self._feature_blocks = {i: level for level, i in feature_blocks(variant).items()}
    freeze_backbone(self, batch_norm=freeze_batch_norm, stem_and_first_stage=freeze_stem_and_first_stage)

  @property
  def description(self) -> str:
    minimal = " minimalistic" if self.minimalistic else ""
    return f"MobileNetV3-{self.variant.capitalize()}{minimal} x{self.width_multiplier:g}"

  def blocks(self) -> List[InvertedResidual]:
    return [getattr(self, n) for n in self._block_names]

  def first_stage_and_stem_layers(self) -> List[tf_keras.layers.Layer]:
    """The stem and the blocks at stride <= 4 (the ResNet's conv1 + conv2_x)."""
    early = [b for b, s in zip(self.blocks(), block_strides(self.variant)) if s <= 4]
    return [self.stem_conv, self.stem_bn] + early

  def call(self, images: tf.Tensor, training: Optional[bool] = None) -> Dict[int, tf.Tensor]:
    x = self.stem_conv(_pad(images, 3, 2, self.padding))
    x = self.activation(self.stem_bn(x, training=training))
    features = {}
    for i, block in enumerate(self.blocks()):
      x = block(x, training=training)
      if i in self._feature_blocks:
        features[self._feature_blocks[i]] = x
    features[5] = self.activation(self.last_bn(self.last_conv(x), training=training))
    return features

  def get_config(self) -> dict:
    return {"name": self.name, **self._args}


def keras_applications_model(variant: str, width_multiplier: float = 1.0,
                             minimalistic: bool = False, weights: Optional[str] = None
                             ) -> tf_keras.Model:
  """The reference: tf_keras.applications.MobileNetV3{Large,Small}(include_top=False)."""
  _check_variant(variant)
  constructor = (tf_keras.applications.MobileNetV3Large if variant == "large"
                 else tf_keras.applications.MobileNetV3Small)
  return constructor(input_shape=(None, None, 3), alpha=width_multiplier,
                     minimalistic=minimalistic, include_top=False, weights=weights)


def keras_feature_layers(variant: str) -> Dict[int, str]:
  """{level: Keras layer name} of the reference features C3..C5 (what `call` returns)."""
  names = {level: f"expanded_conv_{i}/Add" for level, i in feature_blocks(variant).items()}
  return {**names, 5: None}  # C5: the model's output


def convert_keras_applications(keras_model: tf_keras.Model, backbone: MobileNetV3,
                               mean_rgb: Sequence[float], stddev_rgb: Sequence[float]) -> None:
  """Copies a Keras-applications MobileNetV3 (include_top=False) into a built `backbone`.

  Keras feeds the network x / 127.5 - 1, ours (x - mean_rgb) / stddev_rgb: the
  stem conv is scaled by stddev / 127.5 and the constant offset is folded into
  the stem BN (exact when mean = stddev = 127.5). BN epsilons are folded too.
  """
  if not backbone.built:
    raise ValueError("convert_keras_applications: build the backbone (call it once) first")
  def weights(name: str) -> List[np.ndarray]:
    try:
      return keras_model.get_layer(name).get_weights()
    except ValueError as e:
      raise ValueError(f"Keras model {keras_model.name!r} has no layer {name!r}: is it a "
                       f"tf_keras.applications {backbone.description}?") from e

  def assign(ours: tf_keras.layers.Layer, values: List[np.ndarray], name: str,
             path: str = "") -> None:
    theirs, mine = [v.shape for v in values], [tuple(w.shape) for w in ours.weights]
    if theirs != mine:
      raise ValueError(f"Keras layer {name!r} of {keras_model.name!r} has weight shapes {theirs} "
                       f"but {(path or ours.name)!r} of our {backbone.description} has {mine}: the "
                       "variant, "
                       "width_multiplier or minimalistic flag differ")
    ours.set_weights(values)

  def fold_bn(name: str, conv_bias, ours: tf_keras.layers.BatchNormalization) -> None:
    assign(ours, weights(name), name)  # shape check; the values are then folded
    fold_keras_batch_norm(keras_model.get_layer(name), conv_bias, ours)

  (kernel,) = weights("Conv")
  kernel = kernel.astype(np.float64)
  scale = np.asarray(stddev_rgb, np.float64) / KERAS_INPUT_SCALE
  shift = np.asarray(mean_rgb, np.float64) / KERAS_INPUT_SCALE - 1.0
  assign(backbone.stem_conv, [(kernel * scale[None, None, :, None]).astype(np.float32)], "Conv")
  fold_bn("Conv/BatchNorm", np.einsum("hwcf,c->f", kernel, shift), backbone.stem_bn)
  for i, block in enumerate(backbone.blocks()):
    prefix = f"expanded_conv_{i}/" if i else "expanded_conv/"
    pairs = [("depthwise_conv", "depthwise"), ("project_conv", "project")]
    if block.expand_conv is not None:
      pairs.append(("expand_conv", "expand"))
    for ours, theirs in pairs:
      assign(getattr(block, ours), weights(prefix + theirs), prefix + theirs,
             f"{block.name}/{ours}")
      fold_bn(prefix + theirs + "/BatchNorm", 0.0, getattr(block, ours.replace("_conv", "_bn")))
    if block.se_reduce is not None:
      for ours, theirs in (("se_reduce", "Conv"), ("se_expand", "Conv_1")):
        name = f"{prefix}squeeze_excite/{theirs}"
        assign(getattr(block, ours), weights(name), name, f"{block.name}/{ours}")
  assign(backbone.last_conv, weights("Conv_1"), "Conv_1")
  fold_bn("Conv_1/BatchNorm", 0.0, backbone.last_bn)


def keras_applications_to_checkpoint(*, variant: str, weights: str, output_prefix: str,
                                     mean_rgb: Sequence[float], stddev_rgb: Sequence[float],
                                     width_multiplier: float = 1.0, minimalistic: bool = False,
                                     norm_epsilon: float = 1e-3, padding: str = "same") -> str:
  """Maps a Keras-applications MobileNetV3 weights file (h5, no top) onto our backbone and
  writes a checkpoint for model.backbone.init_checkpoint; returns its path."""
  from retinanet.modeling.resnet import save_backbone_checkpoint  # pylint: disable=g-import-not-at-top
  if not tf.io.gfile.exists(weights):
    raise ValueError(f"Keras weights file {weights!r} not found")
  keras_model = keras_applications_model(variant, width_multiplier, minimalistic, weights=weights)
  backbone = MobileNetV3(variant=variant, width_multiplier=width_multiplier,
                         minimalistic=minimalistic, norm_epsilon=norm_epsilon, padding=padding)
  backbone(tf.zeros([1, 64, 64, 3]))
  convert_keras_applications(keras_model, backbone, mean_rgb, stddev_rgb)
  return save_backbone_checkpoint(backbone, output_prefix)
