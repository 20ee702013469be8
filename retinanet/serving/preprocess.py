"""In-graph serving preprocessing: uint8 / encoded images -> model input batch.

Exactly the evaluation transform (`retinanet.dataloader.parser.EvalParser`,
built from the same `preprocess_ops`): resize keeping the aspect ratio so the
image fits the model input, normalize by mean/stddev RGB, zero-pad
bottom/right. Boxes found on the model input map back to the original image
with `preprocess_ops.boxes_to_original_image`.

Encoded images are turned as displayed first (`decode_image`): the JPEG's EXIF
orientation is read in-graph (retinanet/ops/orientation.py, the reader the data
stage uses), so boxes and image_size are in the frame the annotations and the
user see. uint8 images are taken as they are: the caller orients them.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence, Tuple

import tensorflow as tf

from retinanet.dataloader import preprocess_ops
from retinanet.ops import orientation


class ServingBatch(NamedTuple):
  """images: float32 [B, h, w, 3] normalized model input; scale: float32 [B, 2]
  (y, x) resized / original size; image_size: int32 [B, 2] original (height, width)."""
  images: tf.Tensor
  scale: tf.Tensor
  image_size: tf.Tensor


def preprocess_image(image: tf.Tensor, output_size: Tuple[int, int], mean_rgb: Sequence[float],
                     stddev_rgb: Sequence[float]) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """One image [H, W, 3] -> (float32 [out_h, out_w, 3], scale [2], original size int32 [2])."""
  image_size = tf.shape(image)[0:2]
  geometry = preprocess_ops.resize_crop_geometry(image_size, output_size)
  pixels = preprocess_ops.resize_and_crop_image(image, geometry)
  pixels = preprocess_ops.pad_image(preprocess_ops.normalize_image(pixels, mean_rgb, stddev_rgb),
                                    output_size)
  pixels.set_shape([output_size[0], output_size[1], 3])
  return pixels, geometry.image_scale, image_size


def _output_signature(output_size: Tuple[int, int]):
  return (tf.TensorSpec([output_size[0], output_size[1], 3], tf.float32),
          tf.TensorSpec([2], tf.float32), tf.TensorSpec([2], tf.int32))


def preprocess_batch(images: tf.Tensor, output_size: Tuple[int, int],
                     mean_rgb: Sequence[float], stddev_rgb: Sequence[float]) -> ServingBatch:
  """uint8 [B, H, W, 3] images (one size for the batch) -> ServingBatch.

  One geometry for the whole batch, one batched resize: the same numbers as
  `preprocess_image` on each image, without a per-image loop (faster at
  batch > 1, and a plain graph that tf2onnx and TFLite convert).
  """
  images = tf.convert_to_tensor(images)
  if images.shape.rank != 4 or images.shape[-1] != 3:
    raise ValueError(f"serving: images must be [batch, height, width, 3], got {images.shape}")
  image_size = tf.shape(images)[1:3]
  geometry = preprocess_ops.resize_crop_geometry(image_size, output_size)
  # At evaluation scale the resized image fits the output: no crop, offset 0.
  # Resize in float32: ResizeBilinear does so internally for uint8 too, but ONNX
  # Resize would keep uint8.
  pixels = tf.image.resize(tf.cast(images, tf.float32), geometry.scaled_size,
                           method=tf.image.ResizeMethod.BILINEAR)
  pixels = preprocess_ops.normalize_image(pixels, mean_rgb, stddev_rgb)
  scaled = geometry.scaled_size
  pixels = tf.pad(pixels, [[0, 0], [0, output_size[0] - scaled[0]],
                           [0, output_size[1] - scaled[1]], [0, 0]])
  pixels = tf.ensure_shape(pixels, [None, output_size[0], output_size[1], 3])
  batch = tf.shape(images)[0]
  return ServingBatch(images=pixels, scale=tf.tile(geometry.image_scale[None], [batch, 1]),
                      image_size=tf.tile(image_size[None], [batch, 1]))


def decode_image(encoded: tf.Tensor, apply_exif_orientation: bool = True) -> tf.Tensor:
  """Scalar string (JPEG/PNG/BMP/first GIF frame) -> uint8 [H, W, 3]; grey images become RGB.

  With `apply_exif_orientation` a JPEG comes out as displayed (its EXIF
  orientation applied, [W, H, 3] for orientations 5-8); without, in stored order.
  """
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  if apply_exif_orientation:
    image = orientation.orient_image(image, orientation.exif_orientation(encoded))
  image.set_shape([None, None, 3])
  return image


def preprocess_encoded(encoded: tf.Tensor, output_size: Tuple[int, int],
                       mean_rgb: Sequence[float], stddev_rgb: Sequence[float],
                       apply_exif_orientation: bool = True) -> ServingBatch:
  """string [B] encoded images of any sizes -> ServingBatch (each image on its own; as
  displayed with `apply_exif_orientation`, see `decode_image`)."""
  pixels, scale, image_size = tf.map_fn(
      lambda data: preprocess_image(decode_image(data, apply_exif_orientation), output_size,
                                    mean_rgb, stddev_rgb),
      encoded, fn_output_signature=_output_signature(output_size))
  return ServingBatch(images=pixels, scale=scale, image_size=image_size)
