"""Parses one serialized tf.train.Example (retinanet/dataloader/schema.py) into image tensors.

The decoder only reads what the Example stores; geometry and augmentation
live in `parser.py`. The image comes out as displayed: the stored pixels turned
by image/orientation (EXIF, retinanet/ops/orientation.py), the frame of the
stored boxes, height and width. Boxes come out as normalized yxyx, the way the
Example stores them, so that flips and crops can be applied before pixels matter.
"""
from __future__ import annotations

from typing import Dict

import tensorflow as tf

from retinanet.dataloader import schema
from retinanet.ops import orientation as orientation_ops

# Keys of the dict returned by `decode_example`.
IMAGE = "image"                  # uint8 [H, W, 3], as displayed (EXIF orientation applied)
IMAGE_ID = "image_id"            # int64 []
ORIGINAL_SIZE = "original_size"  # int32 [2]: (height, width) of the displayed image
BOXES = "boxes"                  # float32 [M, 4] normalized yxyx
CLASSES = "classes"              # int32 [M] contiguous label 0..num_classes-1
IS_CROWD = "is_crowd"            # bool [M]
AREAS = "areas"                  # float32 [M] annotation area in original pixels (COCO "area")

_OBJECT_FLOAT_KEYS = (schema.YMIN, schema.XMIN, schema.YMAX, schema.XMAX)

# Only the keys training and evaluation read (the Example holds more), with the
# data stage's own feature spec: one definition for writer and reader.
_READ_KEYS = (schema.ENCODED, schema.HEIGHT, schema.WIDTH, schema.IMAGE_ID, schema.ORIENTATION,
              *_OBJECT_FLOAT_KEYS, schema.LABEL, schema.IS_CROWD, schema.AREA)
FEATURE_SPEC: Dict[str, tf.io.FixedLenFeature | tf.io.VarLenFeature] = {
    key: schema.FEATURE_SPEC[key] for key in _READ_KEYS}


def _dense(sparse: tf.SparseTensor) -> tf.Tensor:
  return tf.sparse.to_dense(sparse)


def _assert(condition: tf.Tensor, message: str, image_id: tf.Tensor) -> tf.Operation:
  """An assertion whose error names the record by its image id."""
  return tf.debugging.Assert(condition, [message, "Fix the record with image/id", image_id])


def _check_same_length(image_id: tf.Tensor, lists: Dict[str, tf.Tensor]) -> list:
  """Assertions that every per-object list has as many entries as ymin."""
  reference_key = schema.YMIN
  reference = tf.shape(lists[reference_key])[0]
  return [_assert(tf.equal(tf.shape(values)[0], reference),
                  f"Example field {key!r} must have one entry per object (as many as "
                  f"{reference_key!r}).", image_id)
          for key, values in lists.items() if key != reference_key]


def decode_example(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
  """Parses and decodes one serialized Example (a scalar string tensor).

  Returns a dict with IMAGE (uint8 [H, W, 3], JPEG or PNG, grey and RGBA
  converted to RGB, turned by image/orientation), IMAGE_ID, ORIGINAL_SIZE
  (height, width of that displayed image),
  BOXES (normalized yxyx [M, 4]), CLASSES (int32 [M]), IS_CROWD (bool [M])
  and AREAS (float32 [M]).
  Records whose object lists disagree in length, or whose stored
  image/height, image/width differ from the decoded, oriented image, fail
  with an error naming the field and the image id.
  """
  parsed = tf.io.parse_single_example(serialized, FEATURE_SPEC)
  image_id = parsed[schema.IMAGE_ID]
  lists = {key: _dense(parsed[key]) for key in
           _OBJECT_FLOAT_KEYS + (schema.LABEL, schema.IS_CROWD, schema.AREA)}
  image = tf.io.decode_image(parsed[schema.ENCODED], channels=3, expand_animations=False)
  image = orientation_ops.orient_image(image, parsed[schema.ORIENTATION])
  image.set_shape([None, None, 3])
  size = tf.shape(image)[:2]
  checks = _check_same_length(image_id, lists)
  stored_size = tf.stack([parsed[schema.HEIGHT], parsed[schema.WIDTH]])
  checks.append(_assert(
      tf.reduce_all(tf.equal(tf.cast(size, tf.int64), stored_size)),
      f"Decoded image size (after {schema.ORIENTATION!r}) differs from the stored "
      f"{schema.HEIGHT!r}, {schema.WIDTH!r}.",
      image_id))
  with tf.control_dependencies(checks):
    boxes = tf.stack([lists[k] for k in _OBJECT_FLOAT_KEYS], axis=-1)
  return {
      IMAGE: image,
      IMAGE_ID: image_id,
      ORIGINAL_SIZE: tf.cast(size, tf.int32),
      BOXES: tf.reshape(boxes, [-1, 4]),
      CLASSES: tf.cast(lists[schema.LABEL], tf.int32),
      IS_CROWD: tf.cast(lists[schema.IS_CROWD], tf.bool),
      AREAS: lists[schema.AREA],
  }
