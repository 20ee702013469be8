"""The tf.train.Example schema written by the data stage and read by training.

One Example per image. Boxes are normalized to [0, 1] by the image width and
height, corners (xmin, ymin, xmax, ymax) stored as four parallel float lists.

| key                             | type        | meaning                                       |
|---------------------------------|-------------|-----------------------------------------------|
| image/encoded                   | bytes       | the original file bytes (JPEG or PNG), never re-encoded |
| image/format                    | bytes       | b"jpeg" or b"png"                             |
| image/height, image/width       | int64       | pixels, read from the file header             |
| image/id                        | int64       | the COCO image id                             |
| image/filename                  | bytes       | file name relative to the image directory     |
| image/object/bbox/xmin .. ymax  | float list  | normalized box corners, one per object        |
| image/object/class/label        | int64 list  | contiguous class index 0..N-1 (label map)     |
| image/object/class/category_id  | int64 list  | the original COCO category id                 |
| image/object/area               | float list  | the annotation's area in pixels (COCO "area") |
| image/object/is_crowd           | int64 list  | 1 for crowd regions (ignored by the matcher)  |

Guarantees of the data stage (data/convert.py): boxes are clipped to the image,
so 0 <= xmin < xmax <= 1 and 0 <= ymin < ymax <= 1; the eight per-object lists
have the same length (zero for a negative image, which is still written); the
label is `LabelMap.index_of(category_id)` of the run's label_map.json.
`data.example_codec.FEATURE_SPEC` parses these keys with
tf.io.parse_single_example (the per-object lists as VarLenFeature), and
`data.example_codec.parse_example` decodes one record in plain Python. Shards
are gzip TFRecords: `<output_dir>/Split-<name>/data_tfrecord-NNNNN-of-MMMMM.gz`.
"""
from __future__ import annotations

ENCODED = "image/encoded"
FORMAT = "image/format"
HEIGHT = "image/height"
WIDTH = "image/width"
IMAGE_ID = "image/id"
FILENAME = "image/filename"
XMIN = "image/object/bbox/xmin"
YMIN = "image/object/bbox/ymin"
XMAX = "image/object/bbox/xmax"
YMAX = "image/object/bbox/ymax"
LABEL = "image/object/class/label"
CATEGORY_ID = "image/object/class/category_id"
AREA = "image/object/area"
IS_CROWD = "image/object/is_crowd"
