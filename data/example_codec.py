"""tf.train.Example encoding of the schema in retinanet/dataloader/schema.py (its reader).

The Example carries the ORIGINAL file bytes: JPEG and PNG are never decoded
or re-encoded here (no quality loss, no CPU spent on pixels). The format comes
from the magic bytes, height and width from the header (PIL reads only the
header). Any other format (BMP, GIF, WebP, TIFF, ...) is skipped with reason
"unsupported_format", unless the caller opts in with `convert_unsupported`:
then its pixels (EXIF orientation applied, the first frame of an animation)
are stored as a PNG and the image counts as converted. Without the opt-in
"image/encoded is the file's bytes" always holds.

Orientation and size (one frame for pixels, boxes and sizes: the DISPLAYED one,
the image as viewers and annotation tools show it):
  - a JPEG's EXIF orientation (retinanet/ops/orientation.py, the same in-graph
    reader the serving signatures use) is stored as image/orientation; the
    bytes stay the originals, and image/height, image/width are the displayed
    size (the header's, swapped for orientations 5-8);
  - the COCO boxes are taken to be in the displayed frame, and the JSON's
    height/width (when given) must be the displayed size. When they differ
    the `size_mismatch` policy (data/image_options.py) decides
    (`fit_annotations`): "skip" (the default) skips the image
    ("size_mismatch"), "error" skips it too and the conversion then stops
    listing the files, "rescale" maps the boxes into
    the image: rotated with the pixels when the JSON's size is the stored
    size of a 90-degree-turned image (the annotator saw the stored pixels),
    else scaled by displayed / JSON size. No box is kept in another frame.

Box rules (one outcome each, counted in `BoxReport`):
  - a box partly outside the image is clipped to it ("clipped");
  - a box with zero/negative area after clipping, entirely outside the image
    or with non-finite numbers is dropped ("degenerate_box");
  - a category id missing from the label map is dropped ("unknown_category");
  - crowd annotations (iscrowd=1) are kept and marked is_crowd=1;
  - an image with no remaining boxes is still written (a negative).
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import io
import math
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf
from PIL import Image, ImageOps

from data.image_options import RESCALE, ImageOptions
from retinanet.coco import LabelMap
from retinanet.dataloader import schema
from retinanet.ops import box_ops
from retinanet.ops import orientation as orientation_ops

# Image-level skip reasons (the image is not written).
MISSING_IMAGE = "missing_image"
CORRUPT_IMAGE = "corrupt_image"
# A valid header but pixel data the training decoder (tf.io.decode_image) rejects.
UNDECODABLE_IMAGE = "undecodable_image"
UNSUPPORTED_FORMAT = "unsupported_format"
DUPLICATE_IMAGE_ID = "duplicate_image_id"
# The JSON's height/width is not the image's displayed size (policy "skip" or "error").
SIZE_MISMATCH = "size_mismatch"
IMAGE_SKIP_REASONS = (MISSING_IMAGE, CORRUPT_IMAGE, UNDECODABLE_IMAGE, UNSUPPORTED_FORMAT,
                      DUPLICATE_IMAGE_ID, SIZE_MISMATCH)

# How size_mismatch="rescale" fitted an image's boxes (BoxReport.size_fix).
RESCALED = "rescaled"
REORIENTED = "reoriented"

# Annotation-level drop reasons (the annotation gives no box).
DEGENERATE_BOX = "degenerate_box"
UNKNOWN_CATEGORY = "unknown_category"
MISSING_IMAGE_ID = "missing_image_id"
IMAGE_SKIPPED = "image_skipped"
ANNOTATION_DROP_REASONS = (DEGENERATE_BOX, UNKNOWN_CATEGORY, MISSING_IMAGE_ID, IMAGE_SKIPPED)

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_OTHER_MAGICS = (
    (b"GIF87a", "gif"), (b"GIF89a", "gif"), (b"BM", "bmp"), (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"))
# A complete JPEG ends with the EOI marker, a complete PNG with the IEND
# chunk; both may be followed by a little padding. Their absence near the end
# means a truncated file, which tf.io.decode_image would fail on in training.
_END_MARKER_WINDOW = 1024


class ImageSkipped(Exception):
  """The image cannot be written; `reason` is one of IMAGE_SKIP_REASONS."""

  def __init__(self, reason: str, message: str):
    super().__init__(message)
    self.reason = reason


def detect_format(data: bytes) -> Optional[str]:
  """"jpeg", "png", another known name ("gif", "bmp", "webp", "tiff") or None."""
  if data.startswith(_JPEG_MAGIC):
    return "jpeg"
  if data.startswith(_PNG_MAGIC):
    return "png"
  if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
    return "webp"
  for magic, name in _OTHER_MAGICS:
    if data.startswith(magic):
      return name
  return None


def read_image_header(data: bytes, where: str = "image") -> Tuple[str, int, int]:
  """(format, height, width) from the bytes without decoding pixels.

  Raises ImageSkipped("unsupported_format") for non-JPEG/PNG data and
  ImageSkipped("corrupt_image") for an unreadable header or a truncated file.
  """
  fmt = detect_format(data)
  if fmt is None:
    raise ImageSkipped(CORRUPT_IMAGE, f"{where}: not a recognizable image (first bytes "
                       f"{data[:8]!r})")
  if fmt not in ("jpeg", "png"):
    raise ImageSkipped(UNSUPPORTED_FORMAT, f"{where}: {fmt.upper()} is not stored; convert it to "
                       "JPEG or PNG, or let the conversion do it (--convert_unsupported_images)")
  try:
    with Image.open(io.BytesIO(data), formats=[fmt.upper()]) as im:
      width, height = im.size
  except Exception as e:  # PIL raises several types for bad headers.
    raise ImageSkipped(CORRUPT_IMAGE, f"{where}: unreadable {fmt} header ({e})") from e
  if width <= 0 or height <= 0:
    raise ImageSkipped(CORRUPT_IMAGE, f"{where}: header says {width}x{height} pixels")
  end = b"\xff\xd9" if fmt == "jpeg" else b"IEND"
  if end not in data[-_END_MARKER_WINDOW:]:
    raise ImageSkipped(CORRUPT_IMAGE, f"{where}: truncated {fmt} (no end marker)")
  return fmt, height, width


@functools.lru_cache(maxsize=None)
def _exif_orientation_graph():
  """The serving graph's EXIF reader, traced once per process (conversion and serving read
  one orientation). A concrete function: about half the call overhead of a tf.function
  (~0.3-0.7 ms per JPEG here, against 2.6 ms for the decode check)."""
  return tf.function(orientation_ops.exif_orientation).get_concrete_function(
      tf.TensorSpec([], tf.string))


def read_orientation(data: bytes, fmt: str) -> int:
  """The EXIF orientation 1..8 of a JPEG (1 for PNG and anything unreadable)."""
  if fmt != "jpeg":
    return orientation_ops.NORMAL
  return int(_exif_orientation_graph()(tf.constant(data)))


def convert_to_png(data: bytes, fmt: str, where: str = "image") -> Tuple[bytes, int]:
  """(PNG bytes of another format's pixels, the EXIF orientation applied to them): RGB, the
  first frame, turned as displayed (PIL's exif_transpose; 1 when there is nothing to apply).

  Raises ImageSkipped("unsupported_format") when PIL cannot read the pixels.
  """
  try:
    with Image.open(io.BytesIO(data)) as im:
      orientation = im.getexif().get(0x0112, orientation_ops.NORMAL)
      rgb = ImageOps.exif_transpose(im).convert("RGB")
  except Exception as e:  # PIL raises several types for unreadable data.
    raise ImageSkipped(UNSUPPORTED_FORMAT, f"{where}: cannot convert {fmt.upper()} to PNG "
                       f"({e})") from e
  out = io.BytesIO()
  rgb.save(out, format="PNG")
  applied = orientation if orientation in orientation_ops.ORIENTATIONS else orientation_ops.NORMAL
  return out.getvalue(), applied


def read_image(data: bytes, where: str = "image", decode_check: bool = True,
               convert_unsupported: bool = False) -> Tuple[bytes, str, Tuple[int, int], int, str]:
  """(bytes to store, "jpeg" | "png", the file's stored (height, width), its EXIF orientation,
  the original format of a converted image or "").

  A converted image is stored turned (its PNG is the displayed image), so its
  orientation is for fitting the annotations only. Raises ImageSkipped as
  `read_image_header`, `check_decodes` (with `decode_check`) and `convert_to_png`.
  """
  detected = detect_format(data)
  if convert_unsupported and detected not in (None, "jpeg", "png"):
    png, turned = convert_to_png(data, detected, where)
    _, height, width = read_image_header(png, where)
    if decode_check:
      check_decodes(png, height, width, where, "png")
    return png, "png", orientation_ops.displayed_size(height, width, turned), turned, detected
  fmt, height, width = read_image_header(data, where)
  if decode_check:
    check_decodes(data, height, width, where, fmt)
  return data, fmt, (height, width), read_orientation(data, fmt), ""


# JPEGs are checked at 1/8 scale: libjpeg still entropy-decodes every block (where
# corrupt data is detected) but skips most of the inverse DCT and colour work.
JPEG_CHECK_RATIO = 8


def check_decodes(data: bytes, height: int, width: int, where: str = "image",
                  fmt: str = "jpeg") -> None:
  """Raises ImageSkipped("undecodable_image") unless the pixel data decodes.

  Uses TensorFlow's decoders, the ones training uses (JPEG at 1/JPEG_CHECK_RATIO
  scale: the same entropy decoding, a fraction of the cost; PNG fully, its zlib
  stream and CRCs), and checks the decoded size against the header. Such a
  record would otherwise stop training at its first read.
  """
  try:
    if fmt == "jpeg":
      shape = tf.io.decode_jpeg(data, channels=3, ratio=JPEG_CHECK_RATIO).shape
      expected = (-(-height // JPEG_CHECK_RATIO), -(-width // JPEG_CHECK_RATIO))
    else:
      shape = tf.io.decode_image(data, channels=3, expand_animations=False).shape
      expected = (height, width)
  except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
    message = re.sub(r"\{\{function_node[^}]*\}\}\s*", "", str(e)).strip()
    message = message.splitlines()[0] if message else type(e).__name__
    raise ImageSkipped(UNDECODABLE_IMAGE, f"{where}: the header is valid but the pixel data "
                       f"does not decode ({message})") from e
  if tuple(shape[:2]) != expected:
    raise ImageSkipped(UNDECODABLE_IMAGE, f"{where}: decodes to {shape[1]}x{shape[0]} but the "
                       f"header says {width}x{height}")


@dataclasses.dataclass
class BoxReport:
  """What happened to one image and its annotations.

  `build_example` also sets `annotations` (the COCO records in the displayed
  frame, after `fit_annotations`: what the evaluation ground truth must hold),
  `orientation` (the file's EXIF orientation: stored as image/orientation, or
  applied to the pixels of a converted image), `size_fix` ("", RESCALED or
  REORIENTED) and `converted_from` (the original format of an image stored as
  PNG, else "").
  """
  boxes_written: int = 0
  boxes_clipped: int = 0
  crowd_boxes: int = 0
  dropped: Dict[str, int] = dataclasses.field(default_factory=lambda: collections.Counter())
  labels: List[int] = dataclasses.field(default_factory=list)
  annotations: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
  orientation: int = orientation_ops.NORMAL
  size_fix: str = ""
  converted_from: str = ""


@dataclasses.dataclass
class ObjectRows:
  """The parallel per-object lists of one Example (pixel corners are clipped)."""
  xmin: List[float] = dataclasses.field(default_factory=list)
  ymin: List[float] = dataclasses.field(default_factory=list)
  xmax: List[float] = dataclasses.field(default_factory=list)
  ymax: List[float] = dataclasses.field(default_factory=list)
  label: List[int] = dataclasses.field(default_factory=list)
  category_id: List[int] = dataclasses.field(default_factory=list)
  area: List[float] = dataclasses.field(default_factory=list)
  is_crowd: List[int] = dataclasses.field(default_factory=list)


def clip_box_xywh(box: Sequence[float], height: int, width: int
                  ) -> Optional[Tuple[Tuple[float, float, float, float], bool]]:
  """Clips a COCO [x, y, w, h] pixel box to the image.

  Returns ((xmin, ymin, xmax, ymax) in pixels, was_clipped), or None when the
  box is degenerate: non-finite, or zero/negative width or height after
  clipping (this includes boxes entirely outside the image).
  """
  if len(box) != 4 or not all(math.isfinite(v) for v in box):
    return None
  x, y, w, h = (float(v) for v in box)
  x0, y0, x1, y1 = x, y, x + w, y + h
  cx0, cy0 = min(max(x0, 0.0), width), min(max(y0, 0.0), height)
  cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
  if cx1 <= cx0 or cy1 <= cy0:
    return None
  clipped = (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1)
  return (cx0, cy0, cx1, cy1), clipped


def build_objects(annotations: Sequence[Mapping[str, Any]], height: int, width: int,
                  label_map: LabelMap) -> Tuple[ObjectRows, BoxReport]:
  """Applies the box rules of this module to one image's annotations."""
  rows, report = ObjectRows(), BoxReport()
  for ann in annotations:
    category_id = ann["category_id"]
    if not label_map.has_category(category_id):
      report.dropped[UNKNOWN_CATEGORY] += 1
      continue
    clipped = clip_box_xywh(ann["bbox"], height, width)
    if clipped is None:
      report.dropped[DEGENERATE_BOX] += 1
      continue
    (x0, y0, x1, y1), was_clipped = clipped
    label = label_map.index_of(category_id)
    crowd = int(ann.get("iscrowd", 0))
    area = ann.get("area")
    rows.xmin.append(x0 / width)
    rows.ymin.append(y0 / height)
    rows.xmax.append(x1 / width)
    rows.ymax.append(y1 / height)
    rows.label.append(label)
    rows.category_id.append(category_id)
    rows.area.append(float(area) if area is not None else (x1 - x0) * (y1 - y0))
    rows.is_crowd.append(crowd)
    report.boxes_written += 1
    report.boxes_clipped += int(was_clipped)
    report.crowd_boxes += crowd
    report.labels.append(label)
  return rows, report


def _scaled(ann: Mapping[str, Any], sx: float, sy: float) -> Dict[str, Any]:
  x, y, w, h = (float(v) for v in ann["bbox"])
  out = {**ann, "bbox": [x * sx, y * sy, w * sx, h * sy]}
  if ann.get("area") is not None:
    out["area"] = float(ann["area"]) * sx * sy
  return out


def _reoriented(ann: Mapping[str, Any], stored_size: Tuple[int, int],
                orientation: int) -> Dict[str, Any]:
  yxyx = box_ops.box_convert([[float(v) for v in ann["bbox"]]], "xywh", "yxyx")
  displayed = orientation_ops.boxes_to_displayed_yxyx(yxyx, stored_size, orientation)
  return {**ann, "bbox": [float(v) for v in box_ops.box_convert(displayed, "yxyx", "xywh")[0]]}


def fit_annotations(annotations: Sequence[Mapping[str, Any]], image: Mapping[str, Any],
                    stored_size: Tuple[int, int], orientation: int, policy: str,
                    where: str = "") -> Tuple[List[Dict[str, Any]], str]:
  """(annotations in the displayed frame, "" | RESCALED | REORIENTED) (module docstring).

  `stored_size` is the header's (height, width). The JSON's "height"/"width"
  (each optional) must equal the displayed size; otherwise policy "skip" and
  "error" raise ImageSkipped("size_mismatch") naming `where` (default: the file
  name) and "rescale" fits the boxes.
  """
  where = where or image.get("file_name", "image")
  displayed = orientation_ops.displayed_size(*stored_size, orientation)
  claimed = (image.get("height", displayed[0]), image.get("width", displayed[1]))
  if tuple(claimed) == displayed:
    return [dict(a) for a in annotations], ""
  message = (f"{where}: the JSON says {claimed[1]}x{claimed[0]} (width x height) but the image "
             f"is {displayed[1]}x{displayed[0]} as displayed")
  if orientation != orientation_ops.NORMAL:
    message += f" (stored {stored_size[1]}x{stored_size[0]}, EXIF orientation {orientation})"
  if policy != RESCALE:
    raise ImageSkipped(SIZE_MISMATCH, f"{message}; size_mismatch={policy} (rescale fits the "
                       "boxes to the image)")
  if tuple(claimed) == tuple(stored_size):  # a turned image annotated as stored
    return [_reoriented(a, stored_size, orientation) for a in annotations], REORIENTED
  sx, sy = displayed[1] / claimed[1], displayed[0] / claimed[0]
  return [_scaled(a, sx, sy) for a in annotations], RESCALED


def build_example(image_bytes: bytes, image: Mapping[str, Any],
                  annotations: Sequence[Mapping[str, Any]], label_map: LabelMap,
                  where: str = "", decode_check: bool = True,
                  options: ImageOptions = ImageOptions()) -> Tuple[tf.train.Example, BoxReport]:
  """The Example of one image and what happened to it and its annotations.

  `image` is the COCO image record ("id", "file_name", optional "height",
  "width"); `annotations` are its COCO annotation records (already validated
  by retinanet.coco). Raises ImageSkipped when the bytes are not a complete
  JPEG/PNG (unless `options.convert_unsupported` makes another format a PNG),
  with `decode_check` when they do not decode (`check_decodes`), and when the
  JSON's size is not the displayed size and `options.size_mismatch` is not
  "rescale".
  """
  where = where or image["file_name"]
  image_bytes, fmt, stored_size, orientation, converted_from = read_image(
      image_bytes, where, decode_check, options.convert_unsupported)
  fitted, size_fix = fit_annotations(annotations, image, stored_size, orientation,
                                     options.size_mismatch, where)
  height, width = orientation_ops.displayed_size(*stored_size, orientation)
  rows, report = build_objects(fitted, height, width, label_map)
  report.annotations, report.orientation = fitted, orientation
  report.size_fix, report.converted_from = size_fix, converted_from
  example = tf.train.Example()
  feature = example.features.feature  # Filled in place: the image bytes are copied once.
  feature[schema.ENCODED].bytes_list.value.append(image_bytes)
  feature[schema.FORMAT].bytes_list.value.append(fmt.encode())
  feature[schema.HEIGHT].int64_list.value.append(height)
  feature[schema.WIDTH].int64_list.value.append(width)
  # A converted image's PNG holds the displayed pixels already.
  feature[schema.ORIENTATION].int64_list.value.append(
      orientation_ops.NORMAL if converted_from else orientation)
  feature[schema.IMAGE_ID].int64_list.value.append(image["id"])
  feature[schema.FILENAME].bytes_list.value.append(image["file_name"].encode("utf-8"))
  for key, values in ((schema.XMIN, rows.xmin), (schema.YMIN, rows.ymin),
                      (schema.XMAX, rows.xmax), (schema.YMAX, rows.ymax),
                      (schema.AREA, rows.area)):
    feature[key].float_list.SetInParent()  # Present even when empty (a negative image).
    feature[key].float_list.value.extend(values)
  for key, values in ((schema.LABEL, rows.label), (schema.CATEGORY_ID, rows.category_id),
                      (schema.IS_CROWD, rows.is_crowd)):
    feature[key].int64_list.SetInParent()
    feature[key].int64_list.value.extend(values)
  return example, report
