"""The tf.train.Example schema written by the data stage and read by training.

One Example per image. Boxes are normalized to [0, 1] by the image width and
height, corners (xmin, ymin, xmax, ymax) stored as four parallel float lists.

| key                             | type        | meaning                                       |
|---------------------------------|-------------|-----------------------------------------------|
| image/encoded                   | bytes       | the original file bytes (JPEG or PNG), never re-encoded (*) |
| image/format                    | bytes       | b"jpeg" or b"png"                             |
| image/height, image/width       | int64       | pixels of the displayed image (**)            |
| image/orientation               | int64       | EXIF orientation 1..8 (JPEG; 1 for PNG; optional, 1 when absent) |
| image/id                        | int64       | the COCO image id                             |
| image/filename                  | bytes       | file name relative to the image directory     |
| image/object/bbox/xmin .. ymax  | float list  | normalized box corners, one per object        |
| image/object/class/label        | int64 list  | contiguous class index 0..N-1 (label map)     |
| image/object/class/category_id  | int64 list  | the original COCO category id                 |
| image/object/area               | float list  | the annotation's area in pixels (COCO "area") |
| image/object/is_crowd           | int64 list  | 1 for crowd regions (ignored by the matcher)  |

(*) Other formats (WebP, TIFF, BMP, GIF) are skipped, or, when the conversion is
asked to (`convert_unsupported_images`), stored as a PNG made from their pixels.
(**) The header's size, swapped for EXIF orientations 5-8 (retinanet/ops/orientation.py).

Boxes, height and width are in the displayed frame: `image/encoded` holds the
stored pixels, which the decoder turns by `image/orientation` before use (the
serving graph reads the same orientation from the JPEG itself). Records written
before image/orientation existed parse with orientation 1.

Guarantees of the data stage (data/convert.py): boxes are clipped to the image,
so 0 <= xmin < xmax <= 1 and 0 <= ymin < ymax <= 1; the eight per-object lists
have the same length (zero for a negative image, which is still written); the
label is `LabelMap.index_of(category_id)` of the run's label_map.json.
`FEATURE_SPEC` parses these keys with tf.io.parse_single_example (the
per-object lists as VarLenFeature), and `parse_example` decodes one record in
plain Python; data/example_codec.py writes them. Shards
are gzip TFRecords: `<output_dir>/Split-<name>/data_tfrecord-NNNNN-of-MMMMM.gz`.
"""
from __future__ import annotations

from typing import Any, Dict, Sequence

import numpy as np
import tensorflow as tf

ENCODED = "image/encoded"
FORMAT = "image/format"
HEIGHT = "image/height"
WIDTH = "image/width"
IMAGE_ID = "image/id"
FILENAME = "image/filename"
ORIENTATION = "image/orientation"
XMIN = "image/object/bbox/xmin"
YMIN = "image/object/bbox/ymin"
XMAX = "image/object/bbox/xmax"
YMAX = "image/object/bbox/ymax"
LABEL = "image/object/class/label"
CATEGORY_ID = "image/object/class/category_id"
AREA = "image/object/area"
IS_CROWD = "image/object/is_crowd"

_SCALAR_BYTES = (ENCODED, FORMAT, FILENAME)
_SCALAR_INTS = (HEIGHT, WIDTH, IMAGE_ID)
_FLOAT_LISTS = (XMIN, YMIN, XMAX, YMAX, AREA)
_INT_LISTS = (LABEL, CATEGORY_ID, IS_CROWD)

# For tf.io.parse_single_example / parse_example: scalars are FixedLen, the
# per-object lists VarLen (SparseTensors; densify with tf.sparse.to_dense).
FEATURE_SPEC: Dict[str, Any] = {
    **{k: tf.io.FixedLenFeature([], tf.string) for k in _SCALAR_BYTES},
    **{k: tf.io.FixedLenFeature([], tf.int64) for k in _SCALAR_INTS},
    **{k: tf.io.VarLenFeature(tf.float32) for k in _FLOAT_LISTS},
    **{k: tf.io.VarLenFeature(tf.int64) for k in _INT_LISTS},
    ORIENTATION: tf.io.FixedLenFeature([], tf.int64, default_value=1),
}


def parse_example(serialized: bytes) -> Dict[str, Any]:
  """Decodes a serialized Example into python/numpy values (tests, tools).

  image/encoded is bytes; image/format and image/filename are str; scalar
  ints are int; the per-object lists are float32 / int64 numpy arrays. A
  missing or mistyped key raises ValueError naming it; image/orientation is
  optional (1 when absent, as FEATURE_SPEC's default).
  """
  example = tf.train.Example.FromString(serialized)
  feature = example.features.feature
  out: Dict[str, Any] = {}

  def get(key: str, kind: str) -> Sequence[Any]:
    if key not in feature:
      raise ValueError(f"Example has no feature {key!r}")
    if feature[key].WhichOneof("kind") not in (kind, None):
      raise ValueError(f"Example feature {key!r} is {feature[key].WhichOneof('kind')}, "
                       f"expected {kind}")
    return getattr(feature[key], kind).value

  for key in _SCALAR_BYTES + _SCALAR_INTS:
    values = get(key, "bytes_list" if key in _SCALAR_BYTES else "int64_list")
    if len(values) != 1:
      raise ValueError(f"Example feature {key!r} has {len(values)} values, expected 1")
    out[key] = values[0]
  orientation = get(ORIENTATION, "int64_list") if ORIENTATION in feature else [1]
  if len(orientation) != 1:
    raise ValueError(f"Example feature {ORIENTATION!r} has {len(orientation)} values, expected 1")
  out[ORIENTATION] = orientation[0]
  out[FORMAT] = out[FORMAT].decode()
  out[FILENAME] = out[FILENAME].decode("utf-8")
  for key in _FLOAT_LISTS:
    out[key] = np.asarray(get(key, "float_list"), np.float32)
  for key in _INT_LISTS:
    out[key] = np.asarray(get(key, "int64_list"), np.int64)
  lengths = {len(out[k]) for k in _FLOAT_LISTS + _INT_LISTS}
  if len(lengths) != 1:
    raise ValueError(f"Example per-object lists have different lengths: "
                     f"{ {k: len(out[k]) for k in _FLOAT_LISTS + _INT_LISTS} }")
  return out
