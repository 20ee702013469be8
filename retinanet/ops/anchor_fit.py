"""How well an anchor layout can match a dataset's boxes, and a layout that matches better.

Pure math on boxes in model-input pixels (yxyx), shared by the dataset
statistics stage (inside tensorflow-transform's preprocessing_fn) and the
anchor suggestion (eager, on a sample of boxes).

Best-anchor IoU is exact and closed-form. Anchors of one shape (level, scale,
aspect ratio) sit on a grid of centres ((i + 0.5) * stride); the overlap of two
axis-aligned boxes is the product of their 1-D overlaps, each non-increasing
in the distance between centres along that axis, and IoU = I / (A + B - I)
grows with I. So the best anchor of a shape is the one at the grid centre
nearest to the box centre along y and along x independently, and the best
anchor overall is the best of the S = levels * scales * ratios shapes: O(N * S)
instead of O(N * number of anchors). Anchors are not clipped (retinanet/ops/anchors.py).
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from retinanet.ops.anchors import Anchors, feature_size


def input_scale(image_hw: tf.Tensor, input_size: Sequence[int]) -> tf.Tensor:
  """(y, x) resize factors [..., 2] of images of size `image_hw` [..., 2] at evaluation.

  The same geometry as `preprocess_ops.resize_crop_geometry` with no jitter:
  the long side fits the input, sizes are rounded to whole pixels.
  """
  image_hw = tf.cast(image_hw, tf.float32)
  output = tf.constant([float(input_size[0]), float(input_size[1])], tf.float32)
  scale = tf.reduce_min(output / image_hw, axis=-1, keepdims=True)
  scaled = tf.maximum(tf.round(image_hw * scale), 1.0)
  return scaled / image_hw


def boxes_at_input_scale(normalized_yxyx: tf.Tensor, image_hw: tf.Tensor,
                         input_size: Sequence[int]) -> tf.Tensor:
  """Boxes normalized to their image [N, 4] -> model-input pixels [N, 4] (image_hw: [N, 2])."""
  image_hw = tf.cast(image_hw, tf.float32)
  pixels_per_unit = image_hw * input_scale(image_hw, input_size)  # [N, 2] scaled (h, w)
  return tf.cast(normalized_yxyx, tf.float32) * tf.tile(pixels_per_unit, [1, 2])


@dataclasses.dataclass(frozen=True)
class AnchorShapes:
  """One row per anchor shape (level, scale, ratio): its stride, grid size and box size."""
  strides: np.ndarray  # [S]
  grid_hw: np.ndarray  # [S, 2] feature map (height, width)
  heights: np.ndarray  # [S]
  widths: np.ndarray  # [S]


def anchor_shapes(anchors: Anchors) -> AnchorShapes:
  """The S distinct anchor shapes of a layout, in anchors.py's order of sizes."""
  strides, grids, heights, widths = [], [], [], []
  for level in anchors.levels:
    stride = 2.0 ** level
    grid = feature_size(anchors.image_size, level)
    for i in range(anchors.scales_per_octave):
      base = anchors.anchor_size * stride * 2.0 ** (i / anchors.scales_per_octave)
      for ratio in anchors.aspect_ratios:
        strides.append(stride)
        grids.append(grid)
        heights.append(base / math.sqrt(ratio))
        widths.append(base * math.sqrt(ratio))
  return AnchorShapes(np.asarray(strides), np.asarray(grids, np.float64),
                      np.asarray(heights), np.asarray(widths))


def _nearest_centre(centre: tf.Tensor, stride: tf.Tensor, cells: tf.Tensor) -> tf.Tensor:
  """The grid centre ((i + 0.5) * stride, 0 <= i < cells) nearest to `centre` ([N, 1] vs [S])."""
  index = tf.clip_by_value(tf.floor(centre / stride), 0.0, cells - 1.0)
  return (index + 0.5) * stride


def _overlap(lo: tf.Tensor, hi: tf.Tensor, other_lo: tf.Tensor, other_hi: tf.Tensor) -> tf.Tensor:
  return tf.maximum(tf.minimum(hi, other_hi) - tf.maximum(lo, other_lo), 0.0)


def best_anchor_iou(boxes_yxyx: tf.Tensor, anchors: Anchors) -> tf.Tensor:
  """IoU of each box [N, 4] (model-input pixels) with its best anchor: float32 [N].

  Equal to `box_ops.iou(boxes, anchors.boxes()).max(axis=1)` (see the module
  docstring for why), at S instead of `anchors.num_anchors` IoUs per box.
  """
  shapes = anchor_shapes(anchors)
  boxes = tf.cast(tf.reshape(boxes_yxyx, [-1, 4]), tf.float32)
  ymin, xmin, ymax, xmax = (boxes[:, i:i + 1] for i in range(4))  # [N, 1] each
  stride = tf.constant(shapes.strides, tf.float32)
  half_h = tf.constant(shapes.heights / 2.0, tf.float32)
  half_w = tf.constant(shapes.widths / 2.0, tf.float32)
  acy = _nearest_centre((ymin + ymax) / 2.0, stride, tf.constant(shapes.grid_hw[:, 0], tf.float32))
  acx = _nearest_centre((xmin + xmax) / 2.0, stride, tf.constant(shapes.grid_hw[:, 1], tf.float32))
  inter = (_overlap(ymin, ymax, acy - half_h, acy + half_h) *
           _overlap(xmin, xmax, acx - half_w, acx + half_w))  # [N, S]
  box_area = (ymax - ymin) * (xmax - xmin)
  union = box_area + 4.0 * half_h * half_w - inter
  iou = tf.math.divide_no_nan(inter, union)
  return tf.reduce_max(iou, axis=1)


@dataclasses.dataclass(frozen=True)
class Coverage:
  """What the matcher can do with a set of boxes, from their best-anchor IoUs.

  positive: best IoU >= positive_iou, so at least one anchor can learn the box
    (unless a neighbouring box claims it; not counted here).
  ignored_only: negative_iou <= best < positive_iou: every anchor near the box is
    ignored, so it is never learned but not pushed towards background either.
  background: best < negative_iou: every anchor on the box is trained as background.
  With `allow_low_quality_matches` each box's best anchor becomes positive anyway;
  the fractions still say how poor those matches are.
  """
  num_boxes: int
  positive: float
  ignored_only: float
  background: float
  mean_best_iou: float

  @property
  def no_positive(self) -> float:
    """The fraction of boxes without a single anchor at the positive threshold."""
    return self.ignored_only + self.background

  def to_json(self) -> Dict[str, float]:
    """The fractions as the statistics report records them."""
    return {"positive": self.positive, "ignored_only": self.ignored_only,
            "background": self.background, "no_positive": self.no_positive,
            "mean_best_anchor_iou": self.mean_best_iou, "num_boxes": self.num_boxes}


def coverage(best_iou: np.ndarray, positive_iou: float, negative_iou: float) -> Coverage:
  best = np.asarray(best_iou, np.float64).reshape(-1)
  n = best.size
  if n == 0:
    return Coverage(0, 0.0, 0.0, 0.0, 0.0)
  positive = float(np.mean(best >= positive_iou))
  background = float(np.mean(best < negative_iou))
  return Coverage(n, positive, 1.0 - positive - background, background, float(best.mean()))


def kmeans_log_ratios(widths: np.ndarray, heights: np.ndarray, k: int,
                      iterations: int = 50) -> Tuple[float, ...]:
  """k aspect ratios (width / height) clustering the boxes' log aspect ratios (Lloyd, 1-D).

  Initialised at the quantiles (i + 0.5) / k, so the result is deterministic.
  """
  logs = np.log(np.asarray(widths, np.float64) / np.asarray(heights, np.float64))
  centres = np.quantile(logs, (np.arange(k) + 0.5) / k)
  for _ in range(iterations):
    assign = np.argmin(np.abs(logs[:, None] - centres[None, :]), axis=1)
    updated = np.array([logs[assign == j].mean() if np.any(assign == j) else centres[j]
                        for j in range(k)])
    if np.allclose(updated, centres):
      break
    centres = updated
  return tuple(sorted(float(round(math.exp(c), 2)) for c in centres))


@dataclasses.dataclass(frozen=True)
class Suggestion:
  """An anchor layout (the levels stay) and the coverage it reaches on the same boxes."""
  anchor_size: float
  scales_per_octave: int
  aspect_ratios: Tuple[float, ...]
  coverage: Coverage
  current: Coverage

  def anchors(self, like: Anchors) -> Anchors:
    return dataclasses.replace(like, anchor_size=self.anchor_size,
                               scales_per_octave=self.scales_per_octave,
                               aspect_ratios=self.aspect_ratios)


# anchor_size candidates: quarter-octave steps from 0.5 to 16 (Model Garden's default is 4).
ANCHOR_SIZE_GRID = tuple(round(2.0 ** (k / 4.0), 3) for k in range(-4, 17))


def suggest_layout(boxes_yxyx: np.ndarray, anchors: Anchors, positive_iou: float,
                   negative_iou: float, anchor_sizes: Sequence[float] = ANCHOR_SIZE_GRID
                   ) -> Optional[Suggestion]:
  """The anchor size and aspect ratios that give the most boxes a positive anchor.

  RetinaNet's levels and number of anchors per location stay as configured (so
  the model's size and speed do not change). Candidate aspect ratios pool the
  current ones with k-means clusters (k and k + 1) of the boxes' log aspect
  ratios. The search, on IoU itself: the best anchor size for each clustered
  set, then the best k-subset of the pool at that size, then the best size for
  that subset. The objective is the fraction of boxes whose best-anchor IoU
  reaches `positive_iou`, then the mean best IoU. Returns None without boxes.
  """
  boxes = np.asarray(boxes_yxyx, np.float64).reshape(-1, 4)
  if boxes.shape[0] == 0:
    return None
  heights = boxes[:, 2] - boxes[:, 0]
  widths = boxes[:, 3] - boxes[:, 1]
  k = len(anchors.aspect_ratios)
  clustered = [kmeans_log_ratios(widths, heights, n) for n in (k, k + 1)]
  pool = sorted(set(anchors.aspect_ratios).union(*clustered))

  def score(size: float, ratios: Tuple[float, ...]) -> Tuple[Tuple[float, float], Coverage]:
    layout = dataclasses.replace(anchors, anchor_size=float(size), aspect_ratios=ratios)
    result = coverage(best_anchor_iou(boxes, layout).numpy(), positive_iou, negative_iou)
    return (result.positive, result.mean_best_iou), result

  def best_size(ratios: Tuple[float, ...]) -> Tuple[Tuple[float, float], float]:
    return max((score(size, ratios)[0], size) for size in anchor_sizes)

  start_ratios = tuple(sorted(set(clustered[0]))) if len(set(clustered[0])) == k else tuple(
      anchors.aspect_ratios)
  _, size = max(best_size(r) for r in {start_ratios, tuple(anchors.aspect_ratios)})
  _, ratios = max((score(size, subset)[0], subset) for subset in itertools.combinations(pool, k))
  _, size = best_size(ratios)
  current_key, current = score(anchors.anchor_size, tuple(anchors.aspect_ratios))
  key, result = score(size, ratios)
  if key <= current_key:  # nothing beats the current layout
    return Suggestion(anchors.anchor_size, anchors.scales_per_octave,
                      tuple(anchors.aspect_ratios), current, current)
  return Suggestion(float(size), anchors.scales_per_octave, ratios, result, current)
