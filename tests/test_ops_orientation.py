"""retinanet/ops/orientation.py against PIL: the in-graph EXIF reader, the pixel turn and the
box turn, for all 8 orientations, both byte orders and malformed data."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from retinanet.ops import orientation
from retinanet.serving import preprocess
from tests import exif_images

STORED = np.random.default_rng(3).integers(0, 256, (6, 10, 3), dtype=np.uint8)


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def _read(encoded):
  return orientation.exif_orientation(encoded)


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def _serving_decode(encoded):
  """The encoded signatures' decode, traced as in the SavedModel."""
  return preprocess.decode_image(encoded)


@pytest.mark.parametrize("value", orientation.ORIENTATIONS)
def test_serving_decode_equals_pil_exif_transpose(value):
  data = exif_images.jpeg(STORED, value)
  assert data[2:4] == b"\xff\xe0"  # JFIF APP0 first: the reader walks past it to APP1
  assert int(_read(tf.constant(data))) == value == Image.open(io.BytesIO(data)).getexif()[0x0112]
  stored = tf.io.decode_jpeg(data).numpy()  # the stored pixels, as TensorFlow decodes them
  reference = exif_images.displayed_by_pil(stored, value)
  np.testing.assert_array_equal(_serving_decode(tf.constant(data)).numpy(), reference)
  np.testing.assert_array_equal(orientation.orient_image(stored, value).numpy(), reference)
  assert reference.shape[:2] == orientation.displayed_size(6, 10, value)
  np.testing.assert_array_equal(preprocess.decode_image(tf.constant(data), False).numpy(), stored)


@pytest.mark.parametrize("value", [1, 3, 6, 8])
def test_little_endian_exif_right_after_soi(value):
  data = exif_images.jpeg_little_endian(STORED, value)
  assert Image.open(io.BytesIO(data)).getexif()[0x0112] == value  # PIL reads it the same
  assert int(_read(tf.constant(data))) == value


def test_anything_unreadable_is_orientation_1():
  good = exif_images.jpeg_little_endian(STORED, 6)
  tiff = good.index(b"II*\0")
  cases = {
      "png": tf.io.encode_png(STORED).numpy(),
      "empty": b"",
      "soi only": b"\xff\xd8",
      "no exif": tf.io.encode_jpeg(STORED).numpy(),
      "value 0": exif_images.jpeg_little_endian(STORED, 0),
      "value 9": exif_images.jpeg_little_endian(STORED, 9),
      "LONG, not SHORT": exif_images.jpeg_little_endian(STORED, 6, entry_type=4),
      "bad byte order": good[:tiff] + b"XX*\0" + good[tiff + 4:],
      "bad TIFF magic": good[:tiff] + b"II+\0" + good[tiff + 4:],
      "IFD offset past the end": good[:tiff + 4] + b"\xff\xff\xff\x7f" + good[tiff + 8:],
      "segment length 0": good[:4] + b"\0\0" + good[6:],
      "cut in the segment": good[:tiff + 12],
  }
  got = {name: int(_read(tf.constant(data))) for name, data in cases.items()}
  assert got == {name: 1 for name in cases}
  assert int(_read(tf.constant(good))) == 6


def test_boxes_turn_with_the_pixels_for_every_orientation():
  """A box around a marked block of the stored image lands on the block's displayed pixels."""
  block = (1, 2, 4, 7)  # rows 1..3, columns 2..6 of a 6x10 image
  stored = exif_images.marked_image(6, 10, block)
  for value in orientation.ORIENTATIONS:
    displayed = exif_images.displayed_by_pil(stored, value)
    turned = orientation.boxes_to_displayed_yxyx([block], (6, 10), value).numpy()[0]
    np.testing.assert_array_equal(turned, exif_images.bright_box_yxyx(displayed), str(value))


def test_box_turn_by_hand():
  # Orientation 6 (90 degrees clockwise) of a 6x10 image: displayed 10x6, stored row y
  # becomes displayed column 6 - y, stored column x displayed row x.
  box = orientation.boxes_to_displayed_yxyx([[1.0, 2.0, 4.0, 7.0]], (6, 10), 6)
  np.testing.assert_allclose(box, [[2.0, 2.0, 7.0, 5.0]])
  # Orientation 3 (180 degrees): (y, x) -> (6 - y, 10 - x).
  box = orientation.boxes_to_displayed_yxyx([[1.0, 2.0, 4.0, 7.0]], (6, 10), 3)
  np.testing.assert_allclose(box, [[2.0, 3.0, 5.0, 8.0]])
