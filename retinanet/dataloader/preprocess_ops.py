"""Pure image and box functions used by the train and eval parsers.

No randomness is drawn here: the parsers draw the random numbers (stateless,
from a per-element seed) and pass them in, so every function below is a
deterministic map that tests can check by hand. Boxes are yxyx; a name or
argument says when they are normalized instead of pixels.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence, Tuple, Union

import tensorflow as tf

from retinanet.ops import box_ops

Size = Union[Tuple[int, int], Sequence[int], tf.Tensor]


class ResizeCropGeometry(NamedTuple):
  """Where an image lands in the model input (all tensors).

  scaled_size: int32 [2], the image size after resizing (before the crop).
  image_scale: float32 [2], (y, x) factors actually applied: scaled / original.
  offset: int32 [2], top-left corner of the crop in the resized image.
  crop_size: int32 [2], size of the valid (non-padding) region of the output.
  """
  scaled_size: tf.Tensor
  image_scale: tf.Tensor
  offset: tf.Tensor
  crop_size: tf.Tensor


def resize_crop_geometry(image_size: Size, output_size: Size,
                         jitter_scale: Union[float, tf.Tensor] = 1.0,
                         offset_fraction: Union[Sequence[float], tf.Tensor] = (0.0, 0.0)
                         ) -> ResizeCropGeometry:
  """Geometry of Model Garden's `resize_and_crop_image`.

  The image is resized, keeping its aspect ratio, to the largest size that
  fits in `round(jitter_scale * output_size)`; if that is larger than
  `output_size`, a window of `output_size` starting at
  `floor(offset_fraction * (scaled_size - output_size))` is kept. With
  jitter_scale=1 (evaluation) the long side fits the output and offset is 0.
  """
  image_size = tf.cast(image_size, tf.float32)
  output = tf.cast(tf.convert_to_tensor(output_size), tf.float32)
  target = tf.round(tf.cast(jitter_scale, tf.float32) * output)
  scale = tf.reduce_min(target / image_size)
  scaled_size = tf.maximum(tf.round(image_size * scale), 1.0)
  image_scale = scaled_size / image_size
  max_offset = tf.maximum(scaled_size - output, 0.0)
  offset = tf.floor(max_offset * tf.cast(offset_fraction, tf.float32))
  crop_size = tf.minimum(scaled_size - offset, output)
  return ResizeCropGeometry(
      scaled_size=tf.cast(scaled_size, tf.int32),
      image_scale=image_scale,
      offset=tf.cast(offset, tf.int32),
      crop_size=tf.cast(crop_size, tf.int32))


def resize_and_crop_image(image: tf.Tensor, geometry: ResizeCropGeometry) -> tf.Tensor:
  """Resizes image [H, W, C] to geometry.scaled_size (bilinear) and cuts out the crop window.

  Returns float32 [crop_h, crop_w, C]. (Resizing the whole image and slicing
  measured faster on CPU than computing only the window with
  tf.raw_ops.ScaleAndTranslate, even at a 2x jitter.)
  """
  resized = tf.image.resize(image, geometry.scaled_size, method=tf.image.ResizeMethod.BILINEAR)
  return tf.slice(resized, tf.concat([geometry.offset, [0]], axis=0),
                  tf.concat([geometry.crop_size, [-1]], axis=0))


def resize_and_crop_boxes(boxes: tf.Tensor, geometry: ResizeCropGeometry) -> tf.Tensor:
  """Maps yxyx pixel boxes [M, 4] of the original image into the crop.

  Boxes are scaled, shifted by the crop offset and clipped to the valid
  region [0, crop_size]; boxes outside the window collapse to zero size.
  """
  scale = tf.tile(geometry.image_scale, [2])
  offset = tf.cast(tf.tile(geometry.offset, [2]), tf.float32)
  return box_ops.clip_boxes_yxyx(boxes * scale - offset, geometry.crop_size)


def boxes_to_original_image(boxes: tf.Tensor, scale: tf.Tensor,
                            original_size: tf.Tensor) -> tf.Tensor:
  """Inverse of the eval resize: yxyx boxes in model-input pixels -> original image pixels.

  boxes: [..., K, 4] yxyx in model-input pixels; scale: [..., 2] the (y, x)
  factors from the eval parser; original_size: [..., 2] (height, width).
  Leading axes match (e.g. [B, K, 4] with [B, 2]). Returns boxes / scale
  clipped to the original image; rows with scale 0 (batch padding) give 0.
  """
  boxes = tf.convert_to_tensor(boxes)
  scale4 = tf.cast(tf.concat([scale, scale], axis=-1), boxes.dtype)[..., tf.newaxis, :]
  size = tf.cast(original_size, boxes.dtype)[..., tf.newaxis, :]
  return box_ops.clip_boxes_yxyx(tf.math.divide_no_nan(boxes, scale4), size)


def flip_left_right(image: tf.Tensor, boxes: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """Mirrors image [H, W, C] and its yxyx pixel boxes [M, 4] horizontally."""
  width = tf.cast(tf.shape(image)[1], boxes.dtype)
  return tf.reverse(image, axis=[1]), box_ops.flip_boxes_left_right_yxyx(boxes, width)


def normalize_image(image: tf.Tensor, mean_rgb: Sequence[float],
                    stddev_rgb: Sequence[float]) -> tf.Tensor:
  """(image - mean) / stddev per RGB channel -> float32 [H, W, 3]."""
  inverse_stddev = 1.0 / tf.constant(stddev_rgb, tf.float32)
  offset = tf.constant(mean_rgb, tf.float32) * inverse_stddev
  return tf.cast(image, tf.float32) * inverse_stddev - offset


def pad_image(image: tf.Tensor, output_size: Size) -> tf.Tensor:
  """Pads image [h, w, C] with zeros at the bottom and right to output_size."""
  shape = tf.shape(image)
  output_size = tf.convert_to_tensor(output_size, tf.int32)
  padded = tf.pad(image, [[0, output_size[0] - shape[0]], [0, output_size[1] - shape[1]], [0, 0]])
  return padded


def boxes_large_enough(boxes: tf.Tensor, min_size: float) -> tf.Tensor:
  """bool [M]: yxyx boxes [M, 4] whose height and width are both >= min_size (and > 0)."""
  height = boxes[:, 2] - boxes[:, 0]
  width = boxes[:, 3] - boxes[:, 1]
  min_size = tf.cast(min_size, boxes.dtype)
  return (height >= min_size) & (width >= min_size) & (height > 0) & (width > 0)


def pad_or_truncate(values: tf.Tensor, size: int, pad_value: Union[int, float, bool]) -> tf.Tensor:
  """First `size` entries of values [M, ...], padded with pad_value to exactly [size, ...]."""
  values = values[:size]
  num = tf.shape(values)[0]
  paddings = tf.concat([[[0, size - num]], tf.zeros([tf.rank(values) - 1, 2], tf.int32)], axis=0)
  padded = tf.pad(values, paddings, constant_values=tf.cast(pad_value, values.dtype))
  padded.set_shape([size] + values.shape.as_list()[1:])
  return padded
