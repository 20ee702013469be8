"""Detections from RetinaNet outputs: decode, pre-NMS top-k, NMS, pad.

Pipeline per image (all float32, batched, works in a tf.function with a
static or unknown batch size and in saved models):
  1. scores = sigmoid(class_logits); boxes = box_coder.decode(deltas, anchors),
     clipped to the image. A box clipped to nothing (it lay outside the image,
     e.g. in the zero padding below or beside a resized input) gets score 0, so
     it never takes a slot of the top-k or of the output.
  2. Pre-NMS top-k by score: over (anchor, class) pairs for the "combined" and
     "per_class_*" modes, over anchors scored by their best class for the
     "global_*" modes. With `anchors_per_level` the top-k is taken per level
     (Detectron2 / Model Garden), otherwise over all anchors.
  3. Score threshold (a candidate is kept when score > score_threshold, the
     tf.image convention), then NMS by `nms_mode`:
       combined        tf.image.combined_non_max_suppression (per class hard NMS,
                       max_detections_per_class per class, then the best max_detections)
       per_class_hard  hard NMS of each class separately, then the best max_detections
       per_class_soft  Gaussian soft-NMS of each class separately, then the best
                       (both: every class of every image in one vectorized loop)
       global_hard     class-agnostic: each anchor keeps its best class, one hard NMS
       global_soft     class-agnostic Gaussian soft-NMS
  4. Output padded to max_detections with zeros.

Soft-NMS follows Bodla et al. 2017: a box overlapping a selected box by IoU u
has its score multiplied by exp(-u**2 / soft_nms_sigma) (tf.image's own
`soft_nms_sigma` means exp(-u**2 / (2 sigma)), so it receives sigma / 2).
Soft modes decay every overlap and ignore iou_threshold; returned scores are
the decayed ones.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import tensorflow as tf

from retinanet.ops import box_coder, box_ops

NMS_MODES = ("combined", "per_class_hard", "per_class_soft", "global_hard", "global_soft")
# Sort key of padding entries in _pad_top: below every sigmoid score.
_PADDING_SCORE = -1.0

ImageSize = Union[Tuple[int, int], Sequence[int], tf.Tensor]


def _check_args(nms_mode: str, pre_nms_top_k: int, max_detections: int,
                max_detections_per_class: int, soft_nms_sigma: float) -> None:
  if nms_mode not in NMS_MODES:
    raise ValueError(f"generate_detections: nms_mode={nms_mode!r} is not one of "
                     f"{', '.join(NMS_MODES)}")
  if pre_nms_top_k < 1 or max_detections < 1 or max_detections_per_class < 1:
    raise ValueError("generate_detections: pre_nms_top_k, max_detections and "
                     "max_detections_per_class must be >= 1")
  if nms_mode.endswith("_soft") and soft_nms_sigma <= 0:
    raise ValueError(f"generate_detections: soft_nms_sigma={soft_nms_sigma} must be > 0 "
                     f"for nms_mode={nms_mode!r}")


def decode_and_clip(box_deltas: tf.Tensor, anchors: tf.Tensor, image_size: ImageSize,
                    variances: Sequence[float] = box_coder.DEFAULT_VARIANCES) -> tf.Tensor:
  """Decodes deltas [B, N, 4] against anchors [N, 4] -> float32 yxyx [B, N, 4] clipped.

  `image_size` is (height, width) for the whole batch or an int/float tensor [B, 2].
  """
  boxes = box_coder.decode(box_deltas, tf.cast(anchors, tf.float32)[None], variances)
  size = tf.reshape(tf.cast(image_size, tf.float32), [-1, 1, 2])
  return box_ops.clip_boxes_yxyx(boxes, size)


def _level_segments(num_anchors: Union[int, tf.Tensor],
                    anchors_per_level: Optional[Sequence[int]]
                    ) -> List[Tuple[int, Union[int, tf.Tensor]]]:
  """[(offset, size)] of the anchor ranges where top-k is taken separately."""
  if anchors_per_level is None:
    return [(0, num_anchors)]
  segments, offset = [], 0
  for count in anchors_per_level:
    segments.append((offset, int(count)))
    offset += int(count)
  return segments


def _top_k_size(k: int, size: Union[int, tf.Tensor]) -> Union[int, tf.Tensor]:
  if isinstance(size, int):
    return min(k, size)
  return tf.minimum(k, size)


def _pair_candidates(scores: tf.Tensor, boxes: tf.Tensor, k: int,
                     anchors_per_level: Optional[Sequence[int]]
                     ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """Top-k (anchor, class) pairs per segment -> boxes [B, K, 4], scores [B, K], classes [B, K]."""
  num_classes = tf.shape(scores)[2]
  num_anchors = scores.shape[1] if scores.shape[1] is not None else tf.shape(scores)[1]
  static_c = scores.shape[2]
  out_boxes, out_scores, out_classes = [], [], []
  for offset, size in _level_segments(num_anchors, anchors_per_level):
    level = scores[:, offset:offset + size, :]
    flat = tf.reshape(level, [tf.shape(level)[0], -1])
    flat_size = size * static_c if isinstance(size, int) and static_c else tf.shape(flat)[1]
    values, index = tf.math.top_k(flat, k=_top_k_size(k, flat_size), sorted=True)
    anchor_index = index // num_classes + offset
    out_scores.append(values)
    out_classes.append(index % num_classes)
    out_boxes.append(tf.gather(boxes, anchor_index, batch_dims=1))
  return (tf.concat(out_boxes, 1), tf.concat(out_scores, 1), tf.concat(out_classes, 1))


def _anchor_candidates(scores: tf.Tensor, boxes: tf.Tensor, k: int,
                       anchors_per_level: Optional[Sequence[int]]
                       ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """Top-k anchors by best class score -> boxes [B, K, 4], scores [B, K], classes [B, K]."""
  best_scores = tf.reduce_max(scores, axis=2)
  best_classes = tf.argmax(scores, axis=2, output_type=tf.int32)
  num_anchors = scores.shape[1] if scores.shape[1] is not None else tf.shape(scores)[1]
  out_boxes, out_scores, out_classes = [], [], []
  for offset, size in _level_segments(num_anchors, anchors_per_level):
    values, index = tf.math.top_k(best_scores[:, offset:offset + size], k=_top_k_size(k, size),
                                  sorted=True)
    index += offset
    out_scores.append(values)
    out_classes.append(tf.gather(best_classes, index, batch_dims=1))
    out_boxes.append(tf.gather(boxes, index, batch_dims=1))
  return (tf.concat(out_boxes, 1), tf.concat(out_scores, 1), tf.concat(out_classes, 1))


def _nms_padded(boxes: tf.Tensor, scores: tf.Tensor, max_output: int, iou_threshold: float,
                score_threshold: float, sigma: float) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """One NMS of boxes [K, 4] -> (indices [max_output], scores [max_output], valid [max_output] bool).

  sigma is Bodla's soft-NMS sigma; 0 = hard NMS.
  """
  index, selected_scores = tf.image.non_max_suppression_with_scores(
      boxes, scores, max_output_size=max_output, iou_threshold=iou_threshold,
      score_threshold=score_threshold, soft_nms_sigma=sigma / 2.0)
  count = tf.shape(index)[0]
  pad = max_output - count
  index = tf.pad(index, [[0, pad]])
  selected_scores = tf.pad(selected_scores, [[0, pad]])
  valid = tf.range(max_output) < count
  return index, selected_scores, valid


def _pad_top(boxes: tf.Tensor, scores: tf.Tensor, classes: tf.Tensor, valid: tf.Tensor,
             max_detections: int) -> Dict[str, tf.Tensor]:
  """Best `max_detections` of the valid [P] entries, padded with zeros."""
  ranked = tf.where(valid, scores, _PADDING_SCORE)
  size = tf.shape(ranked)[0]
  ranked = tf.pad(ranked, [[0, tf.maximum(max_detections - size, 0)]],
                  constant_values=_PADDING_SCORE)
  top_scores, top = tf.math.top_k(ranked, k=max_detections, sorted=True)
  keep = top_scores > _PADDING_SCORE
  top = tf.minimum(top, size - 1)
  return {
      "boxes": tf.where(keep[:, None], tf.gather(boxes, top), 0.0),
      "scores": tf.where(keep, top_scores, 0.0),
      "classes": tf.where(keep, tf.gather(classes, top), 0),
      "valid_detections": tf.reduce_sum(tf.cast(keep, tf.int32)),
  }


def _per_class_nms(boxes: tf.Tensor, scores: tf.Tensor, classes: tf.Tensor, num_classes: tf.Tensor,
                   max_per_class: int, max_detections: int, iou_threshold: float,
                   score_threshold: float, sigma: float,
                   class_agnostic: bool = False) -> Dict[str, tf.Tensor]:
  """Greedy NMS of every (image, class) of candidates [B, K] at once, then the best
  max_detections of each image.

  One tf.while_loop of at most max_per_class rounds over the flat candidate list: each
  round every (image, class) group selects its highest alive score, and the group's
  other candidates are suppressed (hard: IoU > iou_threshold) or decayed (soft, sigma >
  0: by exp(-IoU**2 / sigma)) against the selected box; a candidate stays alive while its
  score is > score_threshold. Per round the cost is O(B * K) whatever the number of
  classes, where mapping one NMS op over each class costs C NMS calls per image. The
  selections are those of separate greedy NMS per class (tests: numpy brute force).
  With class_agnostic every image is one group: the global_* selection.
  """
  shape = tf.shape(scores)
  batch, k = shape[0], shape[1]
  flat_scores = tf.reshape(scores, [-1])
  flat_boxes = tf.reshape(boxes, [-1, 4])
  image_of = tf.repeat(tf.range(batch), k)
  if class_agnostic:
    num_classes = 1
    group = image_of
  else:
    group = image_of * num_classes + tf.reshape(classes, [-1])   # (image, class) id
  num_groups = batch * num_classes
  positions = tf.range(batch * k)
  big = batch * k

  def body(step, current, alive, selected, selected_scores):
    masked = tf.where(alive, current, -1.0)
    group_max = tf.math.unsorted_segment_max(masked, group, num_groups)
    is_top = alive & tf.equal(masked, tf.gather(group_max, group))
    pick = tf.math.unsorted_segment_min(tf.where(is_top, positions, big), group, num_groups)
    has_pick = pick < big
    picked = tf.minimum(pick, big - 1)
    chosen = tf.scatter_nd(tf.boolean_mask(picked, has_pick)[:, None],
                           tf.ones_like(tf.boolean_mask(picked, has_pick), tf.bool), [big])
    selected_scores = tf.where(chosen, current, selected_scores)
    selected |= chosen
    alive &= ~chosen
    # IoU of every candidate with the box its group selected this round.
    own_pick = tf.gather(picked, group)
    iou = box_ops.elementwise_iou_yxyx(flat_boxes, tf.gather(flat_boxes, own_pick))
    active = tf.gather(has_pick, group)
    if sigma > 0.0:
      weight = tf.exp(-tf.square(iou) / sigma)
    else:
      weight = tf.where(iou > iou_threshold, 0.0, 1.0)
    current = tf.where(active & alive, current * weight, current)
    alive &= current > score_threshold
    return step + 1, current, alive, selected, selected_scores

  def cond(step, current, alive, selected, selected_scores):
    del current, selected, selected_scores
    return tf.logical_and(step < max_per_class, tf.reduce_any(alive))

  alive = flat_scores > score_threshold
  _, _, _, selected, selected_scores = tf.while_loop(
      cond, body, (tf.constant(0), flat_scores, alive, tf.zeros([big], tf.bool),
                   tf.zeros([big], tf.float32)))
  ranked = tf.reshape(tf.where(selected, selected_scores, _PADDING_SCORE), [batch, k])
  ranked = tf.pad(ranked, [[0, 0], [0, tf.maximum(max_detections - k, 0)]],
                  constant_values=_PADDING_SCORE)
  top_scores, top = tf.math.top_k(ranked, k=max_detections, sorted=True)
  keep = top_scores > _PADDING_SCORE
  top = tf.minimum(top, k - 1)
  return {
      "boxes": tf.where(keep[..., None], tf.gather(boxes, top, batch_dims=1), 0.0),
      "scores": tf.where(keep, top_scores, 0.0),
      "classes": tf.where(keep, tf.gather(classes, top, batch_dims=1), 0),
      "valid_detections": tf.reduce_sum(tf.cast(keep, tf.int32), axis=1),
  }


def _global_nms(boxes: tf.Tensor, scores: tf.Tensor, classes: tf.Tensor, max_detections: int,
                iou_threshold: float, score_threshold: float,
                sigma: float) -> Dict[str, tf.Tensor]:
  """Class-agnostic NMS of one image's candidates [K] (each with its best class)."""
  index, selected, valid = _nms_padded(boxes, scores, max_detections, iou_threshold,
                                       score_threshold, sigma)
  return _pad_top(tf.gather(boxes, index), selected, tf.gather(classes, index), valid,
                  max_detections)


def generate_detections(class_logits: tf.Tensor, box_deltas: tf.Tensor, anchors: tf.Tensor,
                        image_size: ImageSize, nms_mode: str = "combined",
                        pre_nms_top_k: int = 1000, score_threshold: float = 0.05,
                        iou_threshold: float = 0.5, soft_nms_sigma: float = 0.5,
                        max_detections: int = 100, max_detections_per_class: int = 100,
                        variances: Sequence[float] = box_coder.DEFAULT_VARIANCES,
                        anchors_per_level: Optional[Sequence[int]] = None,
                        global_nms_by_loop: bool = False) -> Dict[str, tf.Tensor]:
  """Final detections of a batch (module docstring for the steps and modes).

  Args:
    class_logits: [B, N, C] logits (any float dtype, cast to float32).
    box_deltas: [B, N, 4] box_coder deltas.
    anchors: [N, 4] yxyx pixel anchors in the order of the outputs.
    image_size: (height, width) of the model input, or a tensor [B, 2] (e.g. the region a
      resized image covers before its padding); boxes are clipped to it.
    nms_mode: one of NMS_MODES.
    pre_nms_top_k: candidates kept before NMS (per level with anchors_per_level).
    score_threshold: candidates need score > score_threshold.
    iou_threshold: hard-NMS IoU above which a box is suppressed.
    soft_nms_sigma: Gaussian soft-NMS sigma (Bodla et al.), *_soft modes only.
    max_detections: K, detections per image.
    max_detections_per_class: per-class cap of the combined and per_class_* modes.
    variances: box coder variances.
    anchors_per_level: anchor counts per level (anchors.anchors_per_level values),
      to take pre_nms_top_k per level; None = over all anchors.
    global_nms_by_loop: run the global_* modes with the vectorized per-class loop on
      one group per image instead of tf.image's NMS op (the same selection; for
      runtimes whose soft-NMS op differs, such as TFLite's).

  Returns:
    boxes: float32 [B, K, 4] yxyx pixels clipped to the image, zeros past valid.
    scores: float32 [B, K] sigmoid scores (decayed for soft modes), descending.
    classes: int32 [B, K] contiguous class indices.
    valid_detections: int32 [B].
  """
  _check_args(nms_mode, pre_nms_top_k, max_detections, max_detections_per_class, soft_nms_sigma)
  boxes = decode_and_clip(box_deltas, anchors, image_size, variances)
  scores = tf.where(box_ops.box_area_yxyx(boxes)[..., None] > 0.0,
                    tf.sigmoid(tf.cast(class_logits, tf.float32)), 0.0)
  num_classes = tf.shape(scores)[2]
  sigma = float(soft_nms_sigma) if nms_mode.endswith("_soft") else 0.0
  signature = {
      "boxes": tf.TensorSpec([max_detections, 4], tf.float32),
      "scores": tf.TensorSpec([max_detections], tf.float32),
      "classes": tf.TensorSpec([max_detections], tf.int32),
      "valid_detections": tf.TensorSpec([], tf.int32),
  }

  if nms_mode.startswith("global"):
    cand_boxes, cand_scores, cand_classes = _anchor_candidates(scores, boxes, pre_nms_top_k,
                                                               anchors_per_level)
    if global_nms_by_loop:
      return _per_class_nms(cand_boxes, cand_scores, cand_classes, num_classes, max_detections,
                            max_detections, iou_threshold, score_threshold, sigma,
                            class_agnostic=True)
    return tf.map_fn(
        lambda x: _global_nms(x[0], x[1], x[2], max_detections, iou_threshold, score_threshold,
                              sigma),
        (cand_boxes, cand_scores, cand_classes), fn_output_signature=signature)

  cand_boxes, cand_scores, cand_classes = _pair_candidates(scores, boxes, pre_nms_top_k,
                                                           anchors_per_level)
  if nms_mode == "combined":
    class_scores = tf.one_hot(cand_classes, num_classes, dtype=tf.float32) * cand_scores[..., None]
    result = tf.image.combined_non_max_suppression(
        cand_boxes[:, :, None, :], class_scores, max_output_size_per_class=max_detections_per_class,
        max_total_size=max_detections, iou_threshold=iou_threshold,
        score_threshold=score_threshold, pad_per_class=False, clip_boxes=False)
    return {
        "boxes": result.nmsed_boxes,
        "scores": result.nmsed_scores,
        "classes": tf.cast(result.nmsed_classes, tf.int32),
        "valid_detections": tf.cast(result.valid_detections, tf.int32),
    }

  return _per_class_nms(cand_boxes, cand_scores, cand_classes, num_classes,
                        max_detections_per_class, max_detections, iou_threshold, score_threshold,
                        sigma)
