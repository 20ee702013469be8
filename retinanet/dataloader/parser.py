"""Train and eval preprocessing: decoded Example -> fixed-size model inputs.

Both parsers are callables `parser(decoded, seed) -> (image, labels)` where
`decoded` is the dict of `decoder.decode_example` and `seed` an int [2]
tensor (stateless random ops; the eval parser ignores it). Augmentation is
Model Garden's: random horizontal flip, scale jitter with random crop
(`preprocess_ops.resize_crop_geometry`), normalization, zero padding to the
fixed input size. Target encoding runs here, against anchors computed once
for that size.

Train element: image float32 [H, W, 3] and labels
  class_targets int32 [N]    matched class of POSITIVE anchors, 0 otherwise
  box_targets   float32 [N, 4] box_coder deltas of POSITIVE anchors, 0 otherwise
  match_state   int32 [N]    matcher.POSITIVE / NEGATIVE / IGNORED
  num_positives float32 []   number of POSITIVE anchors (loss normalizer)
  gt_boxes      float32 [max_instances, 4] yxyx model-input pixels (0 padding)
  gt_classes    int32 [max_instances] (-1 padding)
  gt_is_crowd   bool [max_instances] (False padding)
  num_truncated int32 []     objects beyond max_instances (dropped from gt_*, never
                             from the targets, which encode every object)
  skipped       int32 []     0; 1 for `TrainParser.placeholder_element()`, which stands
                             in for a record that failed to decode (every anchor
                             IGNORED: it adds nothing to the loss)
  image_id      int64 []

Eval element: image float32 [H, W, 3] and labels
  image_id      int64 []
  original_size int32 [2]    (height, width) of the decoded image
  scale         float32 [2]  (y, x) resize factors: model pixels = original * scale
  gt_boxes / gt_classes / gt_is_crowd as above (boxes in model-input pixels)
  gt_areas      float32 [max_instances] annotation areas in original pixels (0 padding)
  num_truncated int32 []     objects beyond max_instances (not in gt_*)
  is_valid      bool []      True; batch padding rows are False (input_reader)
Map predictions back with `preprocess_ops.boxes_to_original_image`.
`EvalParser.padding_element()` is the row that pads the last eval batch.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import tensorflow as tf

from retinanet.dataloader import decoder
from retinanet.dataloader import preprocess_ops as ops
from retinanet.ops import box_ops, matcher, target_encoder

Element = Tuple[tf.Tensor, Dict[str, tf.Tensor]]


def _check_size(output_size: Sequence[int]) -> Tuple[int, int]:
  if len(output_size) != 2 or any(int(s) <= 0 for s in output_size):
    raise ValueError(f"parser: output_size={tuple(output_size)} must be (height, width) > 0")
  return int(output_size[0]), int(output_size[1])


def _ground_truth(boxes: tf.Tensor, classes: tf.Tensor, is_crowd: tf.Tensor,
                  max_instances: int) -> Dict[str, tf.Tensor]:
  """Pads / truncates the per-object tensors to max_instances rows, counting what is cut."""
  return {
      "gt_boxes": ops.pad_or_truncate(boxes, max_instances, 0.0),
      "gt_classes": ops.pad_or_truncate(classes, max_instances, target_encoder.PADDING_CLASS),
      "gt_is_crowd": ops.pad_or_truncate(is_crowd, max_instances, False),
      "num_truncated": tf.maximum(tf.shape(classes)[0] - max_instances, 0),
  }


class TrainParser:
  """Augments one decoded Example and encodes its anchor targets.

  Boxes that end up smaller than `min_box_size` pixels in height or width
  after the crop (including those cropped away) are dropped together with
  their class and crowd flag. All objects are encoded (not only the first
  max_instances); max_instances bounds the carried gt_* tensors only.
  """

  def __init__(self, *, output_size: Sequence[int], anchors: tf.Tensor, positive_iou: float,
               negative_iou: float, box_variances: Sequence[float],
               allow_low_quality_matches: bool = False, crowd_ioa: float = 0.7,
               low_quality_rule: str = "all_ties", scale_min: float = 0.1,
               scale_max: float = 2.0, horizontal_flip: bool = True, max_instances: int = 100,
               mean_rgb: Sequence[float] = (123.675, 116.28, 103.53),
               stddev_rgb: Sequence[float] = (58.395, 57.12, 57.375),
               min_box_size: float = 1.0) -> None:
    self._output_size = _check_size(output_size)
    if not 0.0 < scale_min <= scale_max:
      raise ValueError(f"TrainParser: need 0 < scale_min ({scale_min}) <= scale_max ({scale_max})")
    if max_instances < 1:
      raise ValueError(f"TrainParser: max_instances={max_instances} must be >= 1")
    self._anchors = tf.convert_to_tensor(anchors, tf.float32)
    self._positive_iou = positive_iou
    self._negative_iou = negative_iou
    self._box_variances = tuple(box_variances)
    self._allow_low_quality_matches = allow_low_quality_matches
    self._crowd_ioa = crowd_ioa
    self._low_quality_rule = low_quality_rule
    self._scale_min = scale_min
    self._scale_max = scale_max
    self._horizontal_flip = horizontal_flip
    self._max_instances = max_instances
    self._mean_rgb = tuple(mean_rgb)
    self._stddev_rgb = tuple(stddev_rgb)
    self._min_box_size = min_box_size

  def augment(self, decoded: Dict[str, tf.Tensor], seed: tf.Tensor
              ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Flip, jitter, crop, normalize, pad.

    Returns (image float32 [H, W, 3], boxes [M', 4] yxyx model-input pixels
    inside the valid region, classes [M'], is_crowd [M']) where M' <= M.
    """
    flip_seed, scale_seed, offset_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=3))
    image = decoded[decoder.IMAGE]
    boxes = box_ops.denormalize_boxes_yxyx(decoded[decoder.BOXES], decoded[decoder.ORIGINAL_SIZE])
    jitter = tf.random.stateless_uniform([], scale_seed, self._scale_min, self._scale_max)
    fraction = tf.random.stateless_uniform([2], offset_seed)
    geometry = ops.resize_crop_geometry(decoded[decoder.ORIGINAL_SIZE], self._output_size,
                                        jitter, fraction)
    image = ops.resize_and_crop_image(image, geometry)
    boxes = ops.resize_and_crop_boxes(boxes, geometry)
    if self._horizontal_flip:
      do_flip = tf.random.stateless_uniform([], flip_seed) < 0.5
      image, boxes = tf.cond(do_flip, lambda: ops.flip_left_right(image, boxes),
                             lambda: (image, boxes))
    keep = ops.boxes_large_enough(boxes, self._min_box_size)
    boxes = tf.boolean_mask(boxes, keep)
    classes = tf.boolean_mask(decoded[decoder.CLASSES], keep)
    is_crowd = tf.boolean_mask(decoded[decoder.IS_CROWD], keep)
    image = ops.normalize_image(image, self._mean_rgb, self._stddev_rgb)
    image = ops.pad_image(image, self._output_size)
    image.set_shape(self._output_size + (3,))
    return image, boxes, classes, is_crowd

  def __call__(self, decoded: Dict[str, tf.Tensor], seed: tf.Tensor) -> Element:
    image, boxes, classes, is_crowd = self.augment(decoded, seed)
    targets = target_encoder.encode_targets(
        self._anchors, boxes, classes, is_crowd, self._positive_iou, self._negative_iou,
        self._box_variances, self._allow_low_quality_matches, self._crowd_ioa,
        self._low_quality_rule)
    labels = dict(targets)
    labels["num_positives"] = tf.reduce_sum(
        tf.cast(tf.equal(targets["match_state"], matcher.POSITIVE), tf.float32))
    labels.update(_ground_truth(boxes, classes, is_crowd, self._max_instances))
    labels["image_id"] = decoded[decoder.IMAGE_ID]
    labels["skipped"] = tf.constant(0, tf.int32)
    return image, labels

  def placeholder_element(self) -> Element:
    """What replaces a record that cannot be decoded: a zero image whose anchors are all
    IGNORED (no loss, no gradient from it), `skipped` 1 so the trainer counts it."""
    num_anchors = int(self._anchors.shape[0])
    labels = {
        "class_targets": tf.zeros([num_anchors], tf.int32),
        "box_targets": tf.zeros([num_anchors, 4], tf.float32),
        "match_state": tf.fill([num_anchors], tf.constant(matcher.IGNORED, tf.int32)),
        "num_positives": tf.constant(0.0),
    }
    labels.update(_ground_truth(tf.zeros([0, 4], tf.float32), tf.zeros([0], tf.int32),
                                tf.zeros([0], tf.bool), self._max_instances))
    labels["image_id"] = tf.constant(-1, tf.int64)
    labels["skipped"] = tf.constant(1, tf.int32)
    return tf.zeros(self._output_size + (3,), tf.float32), labels


class EvalParser:
  """Resizes (long side fits), normalizes and pads; no augmentation, no targets."""

  def __init__(self, *, output_size: Sequence[int], max_instances: int = 100,
               mean_rgb: Sequence[float] = (123.675, 116.28, 103.53),
               stddev_rgb: Sequence[float] = (58.395, 57.12, 57.375)) -> None:
    self._output_size = _check_size(output_size)
    if max_instances < 1:
      raise ValueError(f"EvalParser: max_instances={max_instances} must be >= 1")
    self._max_instances = max_instances
    self._mean_rgb = tuple(mean_rgb)
    self._stddev_rgb = tuple(stddev_rgb)

  def __call__(self, decoded: Dict[str, tf.Tensor], seed: Optional[tf.Tensor] = None) -> Element:
    del seed  # Evaluation is deterministic.
    original_size = decoded[decoder.ORIGINAL_SIZE]
    geometry = ops.resize_crop_geometry(original_size, self._output_size)
    image = ops.resize_and_crop_image(decoded[decoder.IMAGE], geometry)
    image = ops.pad_image(ops.normalize_image(image, self._mean_rgb, self._stddev_rgb),
                          self._output_size)
    image.set_shape(self._output_size + (3,))
    boxes = box_ops.denormalize_boxes_yxyx(decoded[decoder.BOXES], original_size)
    boxes = ops.resize_and_crop_boxes(boxes, geometry)
    labels = {
        "image_id": decoded[decoder.IMAGE_ID],
        "original_size": original_size,
        "scale": geometry.image_scale,
        "is_valid": tf.constant(True),
    }
    labels.update(_ground_truth(boxes, decoded[decoder.CLASSES], decoded[decoder.IS_CROWD],
                                self._max_instances))
    labels["gt_areas"] = ops.pad_or_truncate(decoded[decoder.AREAS], self._max_instances, 0.0)
    return image, labels

  def padding_element(self) -> Element:
    """A row that is no image: zero pixels, image_id -1, is_valid False, no ground truth.

    Its scale (1, 1) and original_size (the input size) stay valid numbers, so
    code that maps a whole batch back to original pixels does not divide by 0.
    """
    empty = tf.zeros([0], tf.float32)
    labels = {
        "image_id": tf.constant(-1, tf.int64),
        "original_size": tf.constant(self._output_size, tf.int32),
        "scale": tf.ones([2], tf.float32),
        "is_valid": tf.constant(False),
    }
    labels.update(_ground_truth(tf.zeros([0, 4], tf.float32), tf.zeros([0], tf.int32),
                                tf.zeros([0], tf.bool), self._max_instances))
    labels["gt_areas"] = ops.pad_or_truncate(empty, self._max_instances, 0.0)
    return tf.zeros(self._output_size + (3,), tf.float32), labels
