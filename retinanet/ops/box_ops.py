"""Pure box operations.

Every function names the box format it expects, in its name or in an argument.
Formats (last axis of size 4, any leading shape):

| name     | layout                               |
|----------|--------------------------------------|
| "yxyx"   | [ymin, xmin, ymax, xmax] (the default inside `retinanet/`, tf.image NMS) |
| "xyxy"   | [xmin, ymin, xmax, ymax]             |
| "xywh"   | [xmin, ymin, width, height] (COCO)   |
| "cycxhw" | [center_y, center_x, height, width]  |

Coordinates are absolute pixels unless a function says "normalized" (divided
by the image height / width). Functions keep the input dtype.
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import tensorflow as tf

BOX_FORMATS = ("yxyx", "xyxy", "xywh", "cycxhw")

ImageSize = Union[Tuple[float, float], Sequence[float], tf.Tensor]


def _check_format(fmt: str, arg: str) -> None:
  if fmt not in BOX_FORMATS:
    raise ValueError(f"box_convert: {arg}={fmt!r} is not a known box format; use one of "
                     f"{', '.join(BOX_FORMATS)}")


def _to_yxyx(boxes: tf.Tensor, fmt: str) -> tf.Tensor:
  a, b, c, d = tf.unstack(boxes, axis=-1)
  if fmt == "yxyx":
    return boxes
  if fmt == "xyxy":
    return tf.stack([b, a, d, c], axis=-1)
  if fmt == "xywh":
    return tf.stack([b, a, b + d, a + c], axis=-1)
  # cycxhw
  return tf.stack([a - c / 2, b - d / 2, a + c / 2, b + d / 2], axis=-1)


def _from_yxyx(boxes: tf.Tensor, fmt: str) -> tf.Tensor:
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
  if fmt == "yxyx":
    return boxes
  if fmt == "xyxy":
    return tf.stack([xmin, ymin, xmax, ymax], axis=-1)
  if fmt == "xywh":
    return tf.stack([xmin, ymin, xmax - xmin, ymax - ymin], axis=-1)
  # cycxhw
  return tf.stack([(ymin + ymax) / 2, (xmin + xmax) / 2, ymax - ymin, xmax - xmin], axis=-1)


def box_convert(boxes: tf.Tensor, in_fmt: str, out_fmt: str) -> tf.Tensor:
  """Converts boxes [..., 4] from `in_fmt` to `out_fmt` (see BOX_FORMATS).

  Raises ValueError on an unknown format name.
  """
  _check_format(in_fmt, "in_fmt")
  _check_format(out_fmt, "out_fmt")
  boxes = tf.convert_to_tensor(boxes)
  if in_fmt == out_fmt:
    return boxes
  return _from_yxyx(_to_yxyx(boxes, in_fmt), out_fmt)


def xyxy_to_yxyx(boxes: tf.Tensor) -> tf.Tensor:
  """[..., 4] xyxy -> [..., 4] yxyx."""
  return box_convert(boxes, "xyxy", "yxyx")


def yxyx_to_xywh(boxes: tf.Tensor) -> tf.Tensor:
  """[..., 4] yxyx -> [..., 4] xywh (COCO [x, y, width, height])."""
  return box_convert(boxes, "yxyx", "xywh")


def yxyx_to_cycxhw(boxes: tf.Tensor) -> tf.Tensor:
  """[..., 4] yxyx -> [..., 4] [center_y, center_x, height, width]."""
  return box_convert(boxes, "yxyx", "cycxhw")


def cycxhw_to_yxyx(boxes: tf.Tensor) -> tf.Tensor:
  """[..., 4] [center_y, center_x, height, width] -> [..., 4] yxyx."""
  return box_convert(boxes, "cycxhw", "yxyx")


def box_area_yxyx(boxes: tf.Tensor) -> tf.Tensor:
  """Area of yxyx boxes [..., 4] -> [...]; degenerate (inverted) boxes give 0."""
  boxes = tf.convert_to_tensor(boxes)
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
  zero = tf.zeros([], boxes.dtype)
  return tf.maximum(ymax - ymin, zero) * tf.maximum(xmax - xmin, zero)


def pairwise_intersection_yxyx(boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
  """Intersection areas of yxyx boxes1 [N, 4] and boxes2 [M, 4] -> [N, M]."""
  boxes1 = tf.convert_to_tensor(boxes1)
  boxes2 = tf.convert_to_tensor(boxes2, dtype=boxes1.dtype)
  ymin1, xmin1, ymax1, xmax1 = tf.split(boxes1, 4, axis=-1)  # each [N, 1]
  ymin2, xmin2, ymax2, xmax2 = tf.unstack(boxes2, axis=-1)  # each [M]
  zero = tf.zeros([], boxes1.dtype)
  h = tf.maximum(tf.minimum(ymax1, ymax2) - tf.maximum(ymin1, ymin2), zero)
  w = tf.maximum(tf.minimum(xmax1, xmax2) - tf.maximum(xmin1, xmin2), zero)
  return h * w


def pairwise_iou_yxyx(boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
  """IoU of every pair of yxyx boxes1 [N, 4] and boxes2 [M, 4] -> [N, M].

  Empty inputs give [0, M] or [N, 0]. Pairs whose union is empty (two
  zero-area boxes) have IoU 0, never NaN.
  """
  boxes1 = tf.convert_to_tensor(boxes1)
  boxes2 = tf.convert_to_tensor(boxes2, dtype=boxes1.dtype)
  inter = pairwise_intersection_yxyx(boxes1, boxes2)
  union = box_area_yxyx(boxes1)[:, None] + box_area_yxyx(boxes2)[None, :] - inter
  return tf.math.divide_no_nan(inter, union)


def _elementwise_intersection(boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
  """Intersection areas of matching rows of yxyx boxes [..., 4] -> [...]."""
  ymin1, xmin1, ymax1, xmax1 = tf.unstack(boxes1, axis=-1)
  ymin2, xmin2, ymax2, xmax2 = tf.unstack(boxes2, axis=-1)
  zero = tf.zeros([], boxes1.dtype)
  return (tf.maximum(tf.minimum(ymax1, ymax2) - tf.maximum(ymin1, ymin2), zero) *
          tf.maximum(tf.minimum(xmax1, xmax2) - tf.maximum(xmin1, xmin2), zero))


def elementwise_iou_yxyx(boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
  """IoU of matching rows of yxyx boxes [..., 4] -> [...] (the diagonal of the pairwise IoU);
  an empty union gives 0."""
  boxes1 = tf.convert_to_tensor(boxes1)
  boxes2 = tf.convert_to_tensor(boxes2, dtype=boxes1.dtype)
  inter = _elementwise_intersection(boxes1, boxes2)
  return tf.math.divide_no_nan(inter, box_area_yxyx(boxes1) + box_area_yxyx(boxes2) - inter)


def pairwise_ioa_yxyx(boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
  """Intersection over the area of boxes1 for yxyx boxes1 [N, 4], boxes2 [M, 4] -> [N, M].

  The fraction of each box of boxes1 covered by each box of boxes2 (Detectron's
  "iou with iscrowd" for crowd regions). Zero-area rows of boxes1 give 0.
  """
  boxes1 = tf.convert_to_tensor(boxes1)
  boxes2 = tf.convert_to_tensor(boxes2, dtype=boxes1.dtype)
  inter = pairwise_intersection_yxyx(boxes1, boxes2)
  return tf.math.divide_no_nan(inter, box_area_yxyx(boxes1)[:, None])


def generalized_iou_yxyx(boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
  """GIoU (Rezatofighi et al. 2019) of matching rows of yxyx boxes [..., 4] -> [...].

  GIoU = IoU - (C - U) / C with C the area of the smallest enclosing box and U
  the union; in [-1, 1], 1 for identical boxes. Degenerate pairs (C = 0) give
  IoU - 0 = 0 instead of NaN. Differentiable in both arguments.
  """
  boxes1 = tf.convert_to_tensor(boxes1)
  boxes2 = tf.convert_to_tensor(boxes2, dtype=boxes1.dtype)
  ymin1, xmin1, ymax1, xmax1 = tf.unstack(boxes1, axis=-1)
  ymin2, xmin2, ymax2, xmax2 = tf.unstack(boxes2, axis=-1)
  zero = tf.zeros([], boxes1.dtype)
  inter = _elementwise_intersection(boxes1, boxes2)
  union = box_area_yxyx(boxes1) + box_area_yxyx(boxes2) - inter
  enclosing = ((tf.maximum(ymax1, ymax2) - tf.minimum(ymin1, ymin2)) *
               (tf.maximum(xmax1, xmax2) - tf.minimum(xmin1, xmin2)))
  enclosing = tf.maximum(enclosing, zero)
  iou = tf.math.divide_no_nan(inter, union)
  return iou - tf.math.divide_no_nan(enclosing - union, enclosing)


def clip_boxes_yxyx(boxes: tf.Tensor, image_size: ImageSize) -> tf.Tensor:
  """Clips yxyx pixel boxes [..., 4] to [0, height] x [0, width].

  `image_size` is (height, width), or a tensor [..., 2] broadcastable against
  the leading axes of `boxes` (e.g. [B, 1, 2] for per-image sizes of [B, N, 4]).
  """
  boxes = tf.convert_to_tensor(boxes)
  size = tf.cast(tf.convert_to_tensor(image_size), boxes.dtype)
  height, width = size[..., 0:1], size[..., 1:2]
  ymin, xmin, ymax, xmax = tf.split(boxes, 4, axis=-1)
  zero = tf.zeros([], boxes.dtype)
  clip_y = lambda v: tf.minimum(tf.maximum(v, zero), height)
  clip_x = lambda v: tf.minimum(tf.maximum(v, zero), width)
  return tf.concat([clip_y(ymin), clip_x(xmin), clip_y(ymax), clip_x(xmax)], axis=-1)


def _size_as_yxyx_scale(image_size: ImageSize, dtype: tf.DType) -> tf.Tensor:
  size = tf.cast(tf.convert_to_tensor(image_size), dtype)
  height, width = size[..., 0:1], size[..., 1:2]
  return tf.concat([height, width, height, width], axis=-1)


def normalize_boxes_yxyx(boxes: tf.Tensor, image_size: ImageSize) -> tf.Tensor:
  """yxyx pixel boxes [..., 4] -> yxyx boxes normalized to [0, 1] by (height, width)."""
  boxes = tf.convert_to_tensor(boxes)
  return boxes / _size_as_yxyx_scale(image_size, boxes.dtype)


def denormalize_boxes_yxyx(boxes: tf.Tensor, image_size: ImageSize) -> tf.Tensor:
  """Normalized yxyx boxes [..., 4] -> yxyx pixel boxes for an image of (height, width)."""
  boxes = tf.convert_to_tensor(boxes)
  return boxes * _size_as_yxyx_scale(image_size, boxes.dtype)


def flip_boxes_left_right_yxyx(boxes: tf.Tensor, image_width: Union[float, tf.Tensor]) -> tf.Tensor:
  """Mirrors yxyx boxes [..., 4] for an image flipped horizontally.

  Pass `image_width=1.0` for normalized boxes, the width in pixels otherwise.
  """
  boxes = tf.convert_to_tensor(boxes)
  width = tf.cast(image_width, boxes.dtype)
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
  return tf.stack([ymin, width - xmax, ymax, width - xmin], axis=-1)
