r"""ResNet v1 backbones (depths 18, 34, 50, 101, 152) returning {3: C3, 4: C4, 5: C5}.

Architecture: He et al. 2016 with the stride of a downsampling bottleneck in its
3x3 conv ("v1.5", torchvision / Model Garden) unless `stride_in_1x1=True`
(the original MSRA / Caffe / Keras-applications layout, needed for weights
converted from `tf_keras.applications.ResNet50/101/152`). Strided convolutions
pad symmetrically by (k - 1) // 2 like PyTorch and Caffe, so an H x W input
gives ceil(H / 2**l) x ceil(W / 2**l) at level l (the anchors' convention).
Convolutions have no bias (each is followed by batch norm). Kernels start from
He-uniform (the variance of He-normal; drawing it is ~4x cheaper on CPU, which
dominates building a ResNet-152).

Variable names (stable; fine-tuning freezes/restores by these patterns):
  backbone/stem_conv/kernel, backbone/stem_bn/{gamma,beta,moving_mean,moving_variance}
  backbone/conv{S}_block{B}/conv{K}/kernel, .../bn{K}/...       S = 2..5, B = 1.., K = 1..3
  backbone/conv{S}_block{B}/shortcut_conv/kernel, .../shortcut_bn/...
Checkpoint keys follow the same attribute names
(`backbone/conv3_block1/conv2/kernel/.ATTRIBUTES/VARIABLE_VALUE`).

ImageNet weights (they cannot be downloaded in this sandbox):
  * From Keras applications (depth 50/101/152): obtain
    `resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5` (what
    `tf_keras.applications.ResNet50(weights="imagenet", include_top=False)` downloads
    into ~/.keras/models/), then
      python -m retinanet.modeling.imagenet_weights --config=CONFIG \
          --weights=path/to/notop.h5 --output=pretrained/resnet50-imagenet/ckpt
    (`keras_applications_to_checkpoint` with the config's mean_rgb/stddev_rgb) and train with model.backbone.stride_in_1x1=true and
    model.backbone.init_checkpoint=pretrained/resnet50-imagenet/ckpt. The
    conversion folds the Keras conv biases and BN epsilon into our BN, flips
    the first conv from BGR to RGB and folds the Caffe input scaling into it.
  * Any other source (e.g. torchvision weights for 18/34): assign the arrays to
    the variables named above and call `save_backbone_checkpoint`.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras

from retinanet import config as config_lib

# depth -> (uses bottleneck blocks, blocks in conv2_x..conv5_x)
RESNET_SPECS: Dict[int, Tuple[bool, Tuple[int, int, int, int]]] = {
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
    152: (True, (3, 8, 36, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)  # bottleneck inner width / basic block width of conv2..conv5
BOTTLENECK_EXPANSION = 4
OUTPUT_LEVELS = (3, 4, 5)
# BGR means of the Caffe preprocessing used by tf_keras.applications.resnet.
KERAS_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
KERAS_BN_EPSILON = 1.001e-5


def scaled_width(width: int, width_multiplier: float) -> int:
  """A channel count scaled by `width_multiplier`, at least 8 (Model Garden's depth_multiplier)."""
  return max(8, int(round(width * width_multiplier)))


def output_channels(depth: int, width_multiplier: float = 1.0) -> Dict[int, int]:
  """{level: channels} of C3..C5 for a ResNet of `depth`."""
  bottleneck, _ = _spec(depth)
  expansion = BOTTLENECK_EXPANSION if bottleneck else 1
  return {level: scaled_width(STAGE_WIDTHS[level - 2], width_multiplier) * expansion
          for level in OUTPUT_LEVELS}


def _spec(depth: int) -> Tuple[bool, Tuple[int, int, int, int]]:
  if depth not in RESNET_SPECS:
    raise ValueError(f"ResNet depth={depth} is not one of {sorted(RESNET_SPECS)}")
  return RESNET_SPECS[depth]


def batch_norm(*, name: str, momentum: float, epsilon: float,
               synchronized: bool) -> tf_keras.layers.BatchNormalization:
  """The batch norm used everywhere in the model (cross-replica when `synchronized`)."""
  return tf_keras.layers.BatchNormalization(
      momentum=momentum, epsilon=epsilon, synchronized=synchronized, name=name)


def group_norm(*, name: str, groups: int, epsilon: float) -> tf_keras.layers.GroupNormalization:
  """Group norm (Wu & He 2018) of the FPN and heads: no batch statistics, so it is
  the same in training and inference, on any batch size and replica count."""
  return tf_keras.layers.GroupNormalization(groups=groups, epsilon=epsilon, name=name)


def freeze_backbone(backbone: tf_keras.Model, *, batch_norm: bool,
                    stem_and_first_stage: bool) -> None:
  """Makes every BN of `backbone` and/or its `first_stage_and_stem_layers()` non-trainable
  (a frozen BN then runs in inference mode, Keras' rule)."""
  if batch_norm:
    for layer in backbone.submodules:
      if isinstance(layer, tf_keras.layers.BatchNormalization):
        layer.trainable = False
  if stem_and_first_stage:
    for layer in backbone.first_stage_and_stem_layers():
      layer.trainable = False


# How strided convolutions and the stem's max pool pad (model.padding):
#   "symmetric": (k - 1) // 2 on every side (PyTorch, Caffe, Detectron, torchvision);
#   "same": TensorFlow's SAME, the extra row/column at the bottom/right (Model Garden,
#           Keras applications), needed to reproduce weights trained that way exactly.
# Both give ceil(H / stride) outputs; stride-1 convolutions are the same either way.
PADDINGS = config_lib.PADDINGS


def _conv(filters: int, kernel_size: int, stride: int, name: str,
          padding: str = "symmetric") -> tf_keras.layers.Conv2D:
  # With "symmetric", strided convs get explicit padding in `_pad_for`.
  valid = stride != 1 and padding == "symmetric"
  return tf_keras.layers.Conv2D(
      filters, kernel_size, strides=stride, padding="valid" if valid else "same",
      use_bias=False, kernel_initializer="he_uniform", name=name)


def _pad_for(x: tf.Tensor, kernel_size: int, stride: int, padding: str = "symmetric"
             ) -> tf.Tensor:
  """Symmetric (k - 1) // 2 zero padding before a strided conv / pool ("symmetric" only)."""
  pad = (kernel_size - 1) // 2
  if stride == 1 or pad == 0 or padding == "same":
    return x
  return tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])


class ResidualBlock(tf_keras.layers.Layer):
  """A basic (two 3x3) or bottleneck (1x1, 3x3, 1x1) residual block with BN and ReLU."""

  def __init__(self, *, filters: int, stride: int, bottleneck: bool, use_projection: bool,
               stride_in_1x1: bool, norm_momentum: float, norm_epsilon: float,
               use_sync_bn: bool, name: str, padding: str = "symmetric", **kwargs):
    super().__init__(name=name, **kwargs)
    self._args = dict(filters=filters, stride=stride, bottleneck=bottleneck,
                      use_projection=use_projection, stride_in_1x1=stride_in_1x1,
                      norm_momentum=norm_momentum, norm_epsilon=norm_epsilon,
                      use_sync_bn=use_sync_bn, padding=padding)
    self.padding = padding
    norm = dict(momentum=norm_momentum, epsilon=norm_epsilon, synchronized=use_sync_bn)
    if bottleneck:
      out = filters * BOTTLENECK_EXPANSION
      s1, s2 = (stride, 1) if stride_in_1x1 else (1, stride)
      # (kernel size, stride) of conv1, conv2, conv3.
      self.kernel_sizes_and_strides = ((1, s1), (3, s2), (1, 1))
      widths = (filters, filters, out)
    else:
      out = filters
      self.kernel_sizes_and_strides = ((3, stride), (3, 1))
      widths = (filters, filters)
    for k, ((kernel, s), width) in enumerate(zip(self.kernel_sizes_and_strides, widths), start=1):
      conv = _conv(width, kernel, s, name=f"conv{k}", padding=padding)
      bn = batch_norm(name=f"bn{k}", **norm)
      setattr(self, f"conv{k}", conv)
      setattr(self, f"bn{k}", bn)
    self.shortcut_conv = (_conv(out, 1, stride, "shortcut_conv", padding) if use_projection
                          else None)
    self.shortcut_bn = batch_norm(name="shortcut_bn", **norm) if use_projection else None

  def call(self, inputs: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
    shortcut = inputs
    if self.shortcut_conv is not None:
      shortcut = self.shortcut_bn(self.shortcut_conv(inputs), training=training)
    x = inputs
    last = len(self.kernel_sizes_and_strides)
    for k, (kernel, stride) in enumerate(self.kernel_sizes_and_strides, start=1):
      x = getattr(self, f"conv{k}")(_pad_for(x, kernel, stride, self.padding))
      x = getattr(self, f"bn{k}")(x, training=training)
      if k < last:
        x = tf.nn.relu(x)
    return tf.nn.relu(x + shortcut)

  def get_config(self) -> dict:
    return {**super().get_config(), **self._args}


class ResNet(tf_keras.Model):
  """ResNet v1 feature extractor: images [B, H, W, 3] -> {3: C3, 4: C4, 5: C5}.

  Invariant: C_l has spatial size ceil(H / 2**l) x ceil(W / 2**l).
  `freeze_stem_and_first_stage` makes conv1 + conv2_x non-trainable (their BN
  then runs in inference mode, Keras' rule for trainable=False BN);
  `freeze_batch_norm` does the same for every BN of the backbone
  (torchvision/detectron2 FrozenBatchNorm: moving statistics and gamma/beta fixed).
  `width_multiplier` scales every channel count (1.0 = the standard ResNet;
  0.5 makes a CPU-sized network for small datasets such as the sample data).
  """

  def __init__(self, *, depth: int, freeze_stem_and_first_stage: bool = False,
               freeze_batch_norm: bool = False, stride_in_1x1: bool = False,
               norm_momentum: float = 0.99, norm_epsilon: float = 1e-3,
               use_sync_bn: bool = False, width_multiplier: float = 1.0,
               padding: str = "symmetric", name: str = "backbone", **kwargs):
    super().__init__(name=name, **kwargs)
    if width_multiplier <= 0:
      raise ValueError(f"ResNet width_multiplier={width_multiplier} must be > 0")
    if padding not in PADDINGS:
      raise ValueError(f"ResNet padding={padding!r} is not one of {PADDINGS}")
    self.padding = padding
    bottleneck, blocks = _spec(depth)
    widths = [scaled_width(w, width_multiplier) for w in STAGE_WIDTHS]
    stem_width = scaled_width(64, width_multiplier)
    self.width_multiplier = width_multiplier
    self.depth = depth
    self.stride_in_1x1 = stride_in_1x1
    self._args = dict(depth=depth, freeze_stem_and_first_stage=freeze_stem_and_first_stage,
                      freeze_batch_norm=freeze_batch_norm, stride_in_1x1=stride_in_1x1,
                      norm_momentum=norm_momentum, norm_epsilon=norm_epsilon,
                      use_sync_bn=use_sync_bn, width_multiplier=width_multiplier,
                      padding=padding)
    self.stem_conv = _conv(stem_width, 7, 2, "stem_conv", padding)
    self.stem_bn = batch_norm(name="stem_bn", momentum=norm_momentum, epsilon=norm_epsilon,
                              synchronized=use_sync_bn)
    # Block layers are attributes named like their layer so checkpoint keys read
    # `backbone/conv3_block1/...`; the order lives in this list of names.
    self._stage_block_names: List[List[str]] = []
    in_channels = stem_width
    for stage, (num_blocks, width) in enumerate(zip(blocks, widths), start=2):
      names = []
      out_channels = width * (BOTTLENECK_EXPANSION if bottleneck else 1)
      for b in range(1, num_blocks + 1):
        stride = 2 if (b == 1 and stage > 2) else 1
        block = ResidualBlock(
            filters=width, stride=stride, bottleneck=bottleneck,
            use_projection=(b == 1 and (stride != 1 or in_channels != out_channels)),
            stride_in_1x1=stride_in_1x1, norm_momentum=norm_momentum,
            norm_epsilon=norm_epsilon, use_sync_bn=use_sync_bn, name=f"conv{stage}_block{b}",
            padding=padding)
        setattr(self, block.name, block)
        names.append(block.name)
        in_channels = out_channels
      self._stage_block_names.append(names)
    freeze_backbone(self, batch_norm=freeze_batch_norm, stem_and_first_stage=freeze_stem_and_first_stage)

  @property
  def description(self) -> str:
    width = f" x{self.width_multiplier:g}" if self.width_multiplier != 1 else ""
    return f"ResNet-{self.depth}{width}"

  def first_stage_and_stem_layers(self) -> List[tf_keras.layers.Layer]:
    """conv1 (stem conv + BN) and the conv2_x blocks, frozen for ImageNet fine-tuning."""
    return [self.stem_conv, self.stem_bn] + [getattr(self, n) for n in self._stage_block_names[0]]

  def blocks(self, stage: int) -> List[ResidualBlock]:
    """The residual blocks of conv{stage}_x, stage in 2..5."""
    return [getattr(self, n) for n in self._stage_block_names[stage - 2]]

  def call(self, images: tf.Tensor, training: Optional[bool] = None) -> Dict[int, tf.Tensor]:
    x = self.stem_conv(_pad_for(images, 7, 2, self.padding))
    x = tf.nn.relu(self.stem_bn(x, training=training))
    # Zero padding equals -inf padding for max pooling here: inputs are >= 0 after ReLU.
    x = tf.nn.max_pool2d(_pad_for(x, 3, 2, self.padding), 3, 2,
                         "SAME" if self.padding == "same" else "VALID")
    features = {}
    for stage in range(2, 6):
      for block in self.blocks(stage):
        x = block(x, training=training)
      if stage in OUTPUT_LEVELS:
        features[stage] = x
    return features

  def get_config(self) -> dict:
    return {"name": self.name, **self._args}


def save_backbone_checkpoint(backbone: tf_keras.Model, prefix: str) -> str:
  """Writes `tf.train.Checkpoint(backbone=backbone)` to `prefix`; returns the path."""
  return tf.train.Checkpoint(backbone=backbone).write(prefix)


def load_backbone_checkpoint(backbone: tf_keras.Model, path: str) -> None:
  """Restores every backbone variable from a `save_backbone_checkpoint` checkpoint.

  `path` is a checkpoint prefix or a directory (its latest checkpoint). The
  backbone must already be built. Raises ValueError naming the path when it is
  missing or when the checkpoint does not cover every backbone variable (e.g.
  a different depth). Works for any backbone (ResNet, MobileNetV3).
  """
  prefix = path
  if tf.io.gfile.isdir(path):
    prefix = tf.train.latest_checkpoint(path)
    if prefix is None:
      raise ValueError(f"backbone init checkpoint {path!r}: directory has no checkpoint")
  if not tf.io.gfile.exists(prefix + ".index"):
    raise ValueError(
        f"backbone init checkpoint {path!r} not found (expected {prefix}.index): set "
        "model.backbone.init_checkpoint to a checkpoint written by save_backbone_checkpoint / "
        "keras_applications_to_checkpoint, or to \"\" to train from scratch")
  if not backbone.built:
    raise ValueError("load_backbone_checkpoint: build the backbone (call it once) before loading")
  status = tf.train.Checkpoint(backbone=backbone).read(prefix)
  try:
    status.assert_existing_objects_matched()
  except AssertionError as e:
    raise ValueError(
        f"backbone init checkpoint {path!r} does not match a {backbone.description} backbone: "
        f"{str(e)[:500]}") from e
  status.expect_partial()  # an optimizer slot or save counter in the file is fine


def fold_keras_batch_norm(keras_bn: tf_keras.layers.BatchNormalization, conv_bias,
                          ours: tf_keras.layers.BatchNormalization) -> None:
  """Folds a Keras conv bias (array or 0) and BN into our BN exactly (inference mode),
  whatever the two epsilons (Keras' ResNets use 1.001e-5, ours model.norm.epsilon)."""
  gamma, beta, mean, var = [w.astype(np.float64) for w in keras_bn.get_weights()]
  scale = np.sqrt(var + ours.epsilon) / np.sqrt(var + keras_bn.epsilon)
  ours.set_weights([(gamma * scale).astype(np.float32), beta.astype(np.float32),
                    (mean - conv_bias).astype(np.float32), var.astype(np.float32)])


def convert_keras_applications_resnet(keras_model: tf_keras.Model, backbone: ResNet,
                                      mean_rgb: Sequence[float],
                                      stddev_rgb: Sequence[float]) -> None:
  """Copies a `tf_keras.applications.ResNet{50,101,152}` model into a built `backbone`.

  The Keras model expects Caffe inputs (BGR, minus KERAS_CAFFE_MEAN_BGR); ours
  expects (rgb - mean_rgb) / stddev_rgb. The first conv is flipped to RGB and
  scaled by stddev_rgb, and the mean difference is folded into the stem BN, so
  C3..C5 match Keras' conv{3,4,5}_block*_out exactly when mean_rgb is the
  Caffe mean (else only zero padding at the image border differs).
  `backbone` must be built with stride_in_1x1=True.
  """
  if not backbone.stride_in_1x1:
    raise ValueError("Keras-applications ResNet weights need a backbone with stride_in_1x1=True "
                     "(set model.backbone.stride_in_1x1=true)")

  def keras_layer(name: str) -> tf_keras.layers.Layer:
    try:
      return keras_model.get_layer(name)
    except ValueError as e:
      raise ValueError(f"Keras model {keras_model.name!r} has no layer {name!r}: is it a "
                       f"ResNet{backbone.depth} from tf_keras.applications?") from e

  kernel, bias = keras_layer("conv1_conv").get_weights()
  kernel = kernel[:, :, ::-1, :].astype(np.float64)  # BGR -> RGB input channels
  std = np.asarray(stddev_rgb, np.float64)
  shift = np.asarray(mean_rgb, np.float64) - np.asarray(KERAS_CAFFE_MEAN_BGR[::-1], np.float64)
  # conv(x_caffe) = conv(x_norm * std + shift) = conv_scaled(x_norm) + sum(kernel * shift)
  offset = np.einsum("hwcf,c->f", kernel, shift)
  backbone.stem_conv.set_weights([(kernel * std[None, None, :, None]).astype(np.float32)])
  fold_keras_batch_norm(keras_layer("conv1_bn"), bias + offset, backbone.stem_bn)
  for stage in range(2, 6):
    for block in backbone.blocks(stage):
      pairs = [(f"conv{k}", f"bn{k}", f"{block.name}_{k}_conv", f"{block.name}_{k}_bn")
               for k in range(1, len(block.kernel_sizes_and_strides) + 1)]
      if block.shortcut_conv is not None:
        pairs.append(("shortcut_conv", "shortcut_bn", f"{block.name}_0_conv",
                      f"{block.name}_0_bn"))
      for conv_attr, bn_attr, keras_conv, keras_bn in pairs:
        k_kernel, k_bias = keras_layer(keras_conv).get_weights()
        getattr(block, conv_attr).set_weights([k_kernel])
        fold_keras_batch_norm(keras_layer(keras_bn), k_bias.astype(np.float64),
                          getattr(block, bn_attr))


def keras_applications_to_checkpoint(*, depth: int, weights: str, output_prefix: str,
                                     mean_rgb: Sequence[float], stddev_rgb: Sequence[float],
                                     norm_epsilon: float = 1e-3) -> str:
  """Converts Keras-applications ImageNet weights (an h5 path, or "imagenet" to download)
  into a backbone checkpoint for `load_backbone_checkpoint`; returns its path."""
  constructors = {50: tf_keras.applications.ResNet50, 101: tf_keras.applications.ResNet101,
                  152: tf_keras.applications.ResNet152}
  if depth not in constructors:
    raise ValueError(f"Keras applications have ResNet depths {sorted(constructors)}, not {depth}")
  keras_model = constructors[depth](include_top=False, weights=weights, input_shape=(None, None, 3))
  backbone = ResNet(depth=depth, stride_in_1x1=True, norm_epsilon=norm_epsilon)
  backbone(tf.zeros([1, 64, 64, 3]))
  convert_keras_applications_resnet(keras_model, backbone, mean_rgb, stddev_rgb)
  return save_backbone_checkpoint(backbone, output_prefix)

