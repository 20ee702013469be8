"""EXIF orientation: which of the 8 ways a stored image is turned for display.

A camera stores the sensor's pixel rows and records in the JPEG's EXIF data (tag
0x0112 of IFD0) how a viewer must turn them; viewers and annotation tools show
the turned (displayed) image, so COCO boxes and sizes are in the displayed frame
while `tf.io.decode_jpeg` returns the stored one. The eight values, as the turn
from stored to displayed pixels, done here as an optional transpose followed by
optional flips (the order `orient_image` and `boxes_to_displayed_yxyx` apply):

| value | displayed image is the stored one ... | transpose | flip left-right | flip up-down |
|-------|---------------------------------------|-----------|-----------------|--------------|
| 1     | as is                                 |           |                 |              |
| 2     | mirrored left-right                   |           | x               |              |
| 3     | rotated 180 degrees                   |           | x               | x            |
| 4     | mirrored top-bottom                   |           |                 | x            |
| 5     | transposed (mirrored on the diagonal) | x         |                 |              |
| 6     | rotated 90 degrees clockwise          | x         | x               |              |
| 7     | transversed (the anti-diagonal)       | x         | x               | x            |
| 8     | rotated 90 degrees counter-clockwise  | x         |                 | x            |

(PIL's `ImageOps.exif_transpose` gives the same pixels; a test checks all 8.)
Any other value, and any JPEG whose EXIF data cannot be read, means 1: one rule for
the data stage (`exif_orientation` at conversion, stored as image/orientation),
the training decoder (`orient_image`) and the serving graph (both, in-graph).
"""
from __future__ import annotations

from typing import Tuple

import tensorflow as tf

NORMAL = 1
ORIENTATIONS = (1, 2, 3, 4, 5, 6, 7, 8)
TRANSPOSED = (5, 6, 7, 8)
_FLIP_LEFT_RIGHT = (2, 3, 6, 7)
_FLIP_UP_DOWN = (3, 4, 7, 8)

EXIF_ORIENTATION_TAG = 0x0112
# The EXIF APP1 segment follows SOI (or a JFIF APP0) and holds at most 64 KiB, so its
# IFD0 lies in the first WINDOW bytes; an orientation beyond them reads as 1.
WINDOW = 1 << 17
MAX_SEGMENTS = 16       # markers walked before giving up (APPn, COM, DQT, ... before SOS)
MAX_IFD_ENTRIES = 256   # IFD0 entries examined (cameras write ~10-30)
_PAD = 16               # zero bytes after the window: reads past the end see 0
_TIFF_SHORT = 3


def transposes(orientation: int) -> bool:
  """Whether displaying swaps height and width (orientations 5-8)."""
  return orientation in TRANSPOSED


def displayed_size(height: int, width: int, orientation: int) -> Tuple[int, int]:
  """(height, width) of the displayed image of a stored height x width image."""
  return (width, height) if transposes(orientation) else (height, width)


def _flags(orientation: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """(transpose, flip left-right, flip up-down) booleans; values outside 1..8 give none."""
  o = tf.cast(orientation, tf.int32)

  def member(values):
    return tf.reduce_any(tf.equal(o, tf.constant(values, tf.int32)))

  return member(TRANSPOSED), member(_FLIP_LEFT_RIGHT), member(_FLIP_UP_DOWN)


def orient_image(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
  """Stored pixels [H, W, C] -> displayed pixels ([W, H, C] for orientations 5-8)."""
  image = tf.convert_to_tensor(image)
  transpose, flip_lr, flip_ud = _flags(orientation)
  image = tf.cond(transpose, lambda: tf.transpose(image, [1, 0, 2]), lambda: image)
  image = tf.cond(flip_lr, lambda: tf.reverse(image, [1]), lambda: image)
  return tf.cond(flip_ud, lambda: tf.reverse(image, [0]), lambda: image)


def boxes_to_displayed_yxyx(boxes: tf.Tensor, stored_size: tf.Tensor,
                            orientation: tf.Tensor) -> tf.Tensor:
  """Pixel boxes [..., 4] yxyx of the stored image -> the same boxes on the displayed image.

  `stored_size` is the stored image's (height, width); the boxes move with the
  pixels of `orient_image` (corners on pixel edges: a flip maps x to width - x).
  """
  boxes = tf.convert_to_tensor(boxes, tf.float32)
  size = tf.cast(stored_size, tf.float32)
  transpose, flip_lr, flip_ud = _flags(orientation)
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
  height, width = size[0], size[1]
  ymin, xmin, ymax, xmax, height, width = (
      tf.where(transpose, a, b) for a, b in ((xmin, ymin), (ymin, xmin), (xmax, ymax),
                                             (ymax, xmax), (width, height), (height, width)))
  xmin, xmax = tf.where(flip_lr, width - xmax, xmin), tf.where(flip_lr, width - xmin, xmax)
  ymin, ymax = tf.where(flip_ud, height - ymax, ymin), tf.where(flip_ud, height - ymin, ymax)
  return tf.stack([ymin, xmin, ymax, xmax], axis=-1)


def _reader(encoded: tf.Tensor):
  """Byte readers over the first WINDOW bytes of `encoded` (zeros past the end)."""
  raw = tf.io.decode_raw(tf.strings.substr(encoded, 0, WINDOW), tf.uint8)
  data = tf.pad(raw, [[0, WINDOW + _PAD - tf.size(raw)]])
  last = WINDOW + _PAD - 1

  def byte(position: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.gather(data, tf.clip_by_value(position, 0, last)), tf.int64)

  def uint(position: tf.Tensor, size: int, little: tf.Tensor) -> tf.Tensor:
    parts = [byte(position + k) for k in range(size)]
    big_endian = little_endian = tf.zeros_like(parts[0])
    for k in range(size):
      big_endian = big_endian * 256 + parts[k]
      little_endian = little_endian * 256 + parts[size - 1 - k]
    return tf.where(little, little_endian, big_endian)

  return byte, uint


def _find_exif(byte, uint) -> tf.Tensor:
  """Position of the TIFF header inside the JPEG's APP1 "Exif" segment, or -1."""
  big = tf.constant(False)
  exif_id = tf.constant([ord(c) for c in "Exif\0\0"], tf.int64)

  def body(step, position, tiff):
    marker, kind = byte(position), byte(position + 1)
    length = uint(position + 2, 2, big)
    is_exif = (tf.equal(kind, 0xE1) & tf.reduce_all(tf.equal(
        byte(position + 4 + tf.range(6, dtype=tf.int64)), exif_id)))
    fill = tf.equal(kind, 0xFF)   # padding 0xFF bytes before a marker
    stop = (tf.not_equal(marker, 0xFF) | tf.equal(kind, 0xDA) | tf.equal(kind, 0xD9)
            | (~fill & (length < 2)))
    tiff = tf.where(is_exif & ~stop, position + 10, tiff)
    position = tf.where(stop, tf.constant(-1, tf.int64),
                        tf.where(fill, position + 1, position + 2 + length))
    return step + 1, position, tiff

  is_jpeg = tf.equal(byte(tf.constant(0, tf.int64)), 0xFF) & tf.equal(
      byte(tf.constant(1, tf.int64)), 0xD8)
  start = tf.where(is_jpeg, tf.constant(2, tf.int64), tf.constant(-1, tf.int64))
  _, _, tiff = tf.while_loop(
      lambda step, position, tiff: (step < MAX_SEGMENTS) & (position >= 0) & (tiff < 0),
      body, (tf.constant(0), start, tf.constant(-1, tf.int64)))
  return tiff


def exif_orientation(encoded: tf.Tensor) -> tf.Tensor:
  """int32 orientation 1..8 of encoded image bytes (a scalar string), read in-graph.

  Walks the JPEG markers to the APP1 "Exif" segment, reads its TIFF header
  (II little-endian or MM big-endian), and in IFD0 the SHORT entry with tag
  0x0112. Not a JPEG, no EXIF, a malformed segment, a value outside 1..8: 1.
  """
  byte, uint = _reader(encoded)
  tiff = _find_exif(byte, uint)
  order = uint(tiff, 2, tf.constant(False))
  little = tf.equal(order, 0x4949)  # "II"
  valid = (tiff >= 0) & (little | tf.equal(order, 0x4D4D)) & tf.equal(uint(tiff + 2, 2, little),
                                                                     42)
  ifd = tiff + uint(tiff + 4, 4, little)
  count = uint(ifd, 2, little)
  index = tf.range(MAX_IFD_ENTRIES, dtype=tf.int64)
  entry = ifd + 2 + 12 * index
  match = ((index < count) & tf.equal(uint(entry, 2, little), EXIF_ORIENTATION_TAG)
           & tf.equal(uint(entry + 2, 2, little), _TIFF_SHORT))
  first = tf.argmax(tf.cast(match, tf.int32), output_type=tf.int64)
  value = uint(ifd + 2 + 12 * first + 8, 2, little)
  valid = valid & tf.reduce_any(match) & (value >= 1) & (value <= 8)
  return tf.cast(tf.where(valid, value, NORMAL), tf.int32)
