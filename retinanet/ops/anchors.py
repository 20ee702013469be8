"""RetinaNet anchors (TF Model Garden definition).

Ordering (the model's outputs are concatenated in exactly this order):
  1. level by level, min_level .. max_level;
  2. within a level, row-major over the feature map: location (y, x) comes
     before (y, x + 1), and row y before row y + 1;
  3. within a location, A = scales_per_octave * len(aspect_ratios) anchors,
     scale-major: for i in range(scales_per_octave): for r in aspect_ratios.

At level l the stride is s = 2**l, the feature map is ceil(H / s) x ceil(W / s)
(what stride-2 "same" convolutions give), and anchor centres are
((y + 0.5) * s, (x + 0.5) * s). Scale i has base side
anchor_size * s * 2**(i / scales_per_octave); aspect ratio r is width / height
(Model Garden): width = base * sqrt(r), height = base / sqrt(r), so the area
base**2 does not depend on r. Boxes are yxyx pixels and are not clipped.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf


def _check_args(image_size: Sequence[int], min_level: int, max_level: int,
                scales_per_octave: int, aspect_ratios: Sequence[float]) -> None:
  if len(image_size) != 2 or any(int(s) <= 0 for s in image_size):
    raise ValueError(f"anchors: image_size={tuple(image_size)} must be (height, width) > 0")
  if min_level > max_level:
    raise ValueError(f"anchors: min_level={min_level} must be <= max_level={max_level}")
  if scales_per_octave < 1:
    raise ValueError(f"anchors: scales_per_octave={scales_per_octave} must be >= 1")
  if not aspect_ratios or any(r <= 0 for r in aspect_ratios):
    raise ValueError(f"anchors: aspect_ratios={tuple(aspect_ratios)} must be positive")


def feature_size(image_size: Sequence[int], level: int) -> Tuple[int, int]:
  """(height, width) of the level-`level` feature map: ceil(image_size / 2**level)."""
  stride = 2 ** level
  return (int(math.ceil(image_size[0] / stride)), int(math.ceil(image_size[1] / stride)))


def anchors_per_level(image_size: Sequence[int], min_level: int, max_level: int,
                      scales_per_octave: int, aspect_ratios: Sequence[float]) -> Dict[int, int]:
  """Number of anchors at each level {level: feature_h * feature_w * A}, in level order."""
  _check_args(image_size, min_level, max_level, scales_per_octave, aspect_ratios)
  per_location = scales_per_octave * len(aspect_ratios)
  counts = {}
  for level in range(min_level, max_level + 1):
    h, w = feature_size(image_size, level)
    counts[level] = h * w * per_location
  return counts


def _level_anchors_np(image_size: Sequence[int], level: int, anchor_size: float,
                      scales_per_octave: int, aspect_ratios: Sequence[float]) -> np.ndarray:
  """Anchors of one level as float64 numpy [h * w * A, 4] yxyx."""
  stride = 2.0 ** level
  fh, fw = feature_size(image_size, level)
  half_sizes = []  # [A, 2] (half height, half width), scale-major
  for i in range(scales_per_octave):
    base = anchor_size * stride * 2.0 ** (i / scales_per_octave)
    for ratio in aspect_ratios:
      half_sizes.append((base / math.sqrt(ratio) / 2.0, base * math.sqrt(ratio) / 2.0))
  half = np.asarray(half_sizes, np.float64)
  cy = (np.arange(fh, dtype=np.float64) + 0.5) * stride
  cx = (np.arange(fw, dtype=np.float64) + 0.5) * stride
  cyy, cxx = np.meshgrid(cy, cx, indexing="ij")  # [fh, fw], row-major
  centers = np.stack([cyy, cxx], axis=-1).reshape(-1, 1, 2)  # [h*w, 1, 2]
  boxes = np.concatenate([centers - half[None], centers + half[None]], axis=-1)  # [h*w, A, 4]
  return boxes.reshape(-1, 4)


def generate_anchors(image_size: Sequence[int], min_level: int, max_level: int,
                     anchor_size: float, scales_per_octave: int,
                     aspect_ratios: Sequence[float]) -> tf.Tensor:
  """All anchors of an image of `image_size` (height, width): float32 [N, 4] yxyx pixels.

  N = sum(anchors_per_level(...).values()); order as in the module docstring.
  The result is a constant (computed in float64 numpy, then cast), so it is
  cheap to embed in tf.data and saved models.
  """
  _check_args(image_size, min_level, max_level, scales_per_octave, aspect_ratios)
  levels = [_level_anchors_np(image_size, level, anchor_size, scales_per_octave, aspect_ratios)
            for level in range(min_level, max_level + 1)]
  return tf.constant(np.concatenate(levels, axis=0).astype(np.float32))


@dataclasses.dataclass(frozen=True)
class Anchors:
  """The anchor layout of one model input size; holds explicit typed args, not a config."""
  image_size: Tuple[int, int]
  min_level: int
  max_level: int
  anchor_size: float
  scales_per_octave: int
  aspect_ratios: Tuple[float, ...]

  def __post_init__(self) -> None:
    _check_args(self.image_size, self.min_level, self.max_level, self.scales_per_octave,
                self.aspect_ratios)

  @property
  def num_anchors_per_location(self) -> int:
    return self.scales_per_octave * len(self.aspect_ratios)

  @property
  def levels(self) -> List[int]:
    return list(range(self.min_level, self.max_level + 1))

  @property
  def counts_per_level(self) -> Dict[int, int]:
    """{level: number of anchors}, in level order."""
    return anchors_per_level(self.image_size, self.min_level, self.max_level,
                             self.scales_per_octave, self.aspect_ratios)

  @property
  def num_anchors(self) -> int:
    return sum(self.counts_per_level.values())

  def feature_sizes(self) -> Dict[int, Tuple[int, int]]:
    """{level: (feature height, feature width)}."""
    return {level: feature_size(self.image_size, level) for level in self.levels}

  def layout_json(self) -> Dict[str, Any]:
    """The layout as JSON values: what the statistics report records and training compares."""
    return {"input_size": list(self.image_size), "min_level": self.min_level,
            "max_level": self.max_level, "anchor_size": self.anchor_size,
            "scales_per_octave": self.scales_per_octave,
            "aspect_ratios": list(self.aspect_ratios)}

  def boxes(self) -> tf.Tensor:
    """float32 [N, 4] yxyx pixel anchors (see generate_anchors)."""
    return generate_anchors(self.image_size, self.min_level, self.max_level, self.anchor_size,
                            self.scales_per_octave, self.aspect_ratios)

  def split_by_level(self, tensor: tf.Tensor, axis: int = 0) -> Dict[int, tf.Tensor]:
    """Splits a tensor whose `axis` runs over the N anchors into {level: part}."""
    parts = tf.split(tensor, list(self.counts_per_level.values()), axis=axis)
    return dict(zip(self.levels, parts))
