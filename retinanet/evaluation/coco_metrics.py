"""COCO box evaluation: accumulate detections, score them with COCOeval.

Detections arrive as the post-processor emits them (padded batches, yxyx,
contiguous class indices 0..C-1) after the caller mapped the boxes back to
original image pixels (`boxes_to_original_pixels`). They are converted to
COCO results ([x, y, width, height] in original pixels, original category
ids) and scored by COCOeval against ground truth that comes either from a
COCO annotations JSON or from arrays accumulated from the eval dataset (the
TFRecords keep original category ids, is_crowd and area).

Two COCOeval backends with the same API and results (`BACKENDS`):
`faster_coco_eval` (default: pycocotools' algorithm in C++, its 12 numbers and
precision array equal pycocotools' to float rounding, about 12x faster on
COCO-like data: BENCHMARKS.md "COCO evaluation backends") and `pycocotools`
(the reference; tests compare the two). Everything here is numpy + COCOeval (no tensors);
`tf.io.gfile` is used only for file I/O so that paths may be local or gs://.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
from pycocotools import coco as coco_api
from pycocotools import cocoeval

from retinanet import coco, fileio
from retinanet import config as config_lib

logger = logging.getLogger(__name__)

BACKENDS = config_lib.COCO_BACKENDS
DEFAULT_BACKEND = config_lib.EvalConfig.coco_backend


def coco_backend(name: str):
  """(COCO class, COCOeval class) of a backend in BACKENDS."""
  if name == "pycocotools":
    return coco_api.COCO, cocoeval.COCOeval
  if name == "faster_coco_eval":
    import faster_coco_eval  # pylint: disable=g-import-not-at-top
    # Its pycocotools drop-in: COCOeval_faster that prints (summarize) to stdout as pycocotools does.
    from faster_coco_eval.core.faster_eval_api import COCOeval  # pylint: disable=g-import-not-at-top
    return faster_coco_eval.COCO, COCOeval
  raise ValueError(f"unknown COCO evaluation backend {name!r}; choose one of {BACKENDS}")

# The 12 numbers of COCOeval.summarize(), in its order (COCOeval.stats).
COCO_METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                     "ARmax1", "ARmax10", "ARmax100", "ARs", "ARm", "ARl")
# Per-class AP reads COCOeval's precision array [T, R, K, A, M] at area "all"
# and maxDets=100 (indices into the default bbox Params).
AREA_ALL_INDEX = 0
MAX_DETS_100_INDEX = 2
# pycocotools marks "no ground truth here" with -1 in precision/recall/stats.
COCO_NO_GROUND_TRUTH = -1.0

ClassToCategory = Union[Mapping[Any, int], Sequence[int], np.ndarray]
ArrayLike = Any  # numpy arrays, eager tensors, nested lists


# ----------------------------------------------------------------- box helpers

def boxes_yxyx_to_coco_xywh(boxes_yxyx: ArrayLike) -> np.ndarray:
  """Converts boxes (float[..., 4]) (ymin, xmin, ymax, xmax) to COCO (x, y, width, height)."""
  boxes = np.asarray(boxes_yxyx, dtype=np.float64)
  if boxes.ndim < 1 or boxes.shape[-1] != 4:
    raise ValueError(f"boxes_yxyx must have shape [..., 4], got {boxes.shape}")
  ymin, xmin, ymax, xmax = np.moveaxis(boxes, -1, 0)
  return np.stack([xmin, ymin, xmax - xmin, ymax - ymin], axis=-1)


def coco_xywh_to_boxes_yxyx(boxes_xywh: ArrayLike) -> np.ndarray:
  """Converts COCO boxes (float[..., 4]) (x, y, width, height) to (ymin, xmin, ymax, xmax)."""
  boxes = np.asarray(boxes_xywh, dtype=np.float64)
  if boxes.ndim < 1 or boxes.shape[-1] != 4:
    raise ValueError(f"boxes_xywh must have shape [..., 4], got {boxes.shape}")
  x, y, w, h = np.moveaxis(boxes, -1, 0)
  return np.stack([y, x, y + h, x + w], axis=-1)


def boxes_to_original_pixels(boxes_yxyx: ArrayLike, scales: ArrayLike,
                             original_sizes: ArrayLike) -> np.ndarray:
  """Maps boxes (float[B, K, 4], yxyx, model-input pixels) back to original pixels.

  Args:
    boxes_yxyx: detections in model-input pixels.
    scales: [B] (one resize factor per image) or [B, 2] (y, x factors) with
      model_input = original * scale.
    original_sizes: [B, 2] original (height, width); boxes are clipped to it.

  Returns:
    float64[B, K, 4] yxyx boxes in original image pixels.
  """
  boxes = np.asarray(boxes_yxyx, dtype=np.float64)
  if boxes.ndim != 3 or boxes.shape[-1] != 4:
    raise ValueError(f"boxes_yxyx must have shape [B, K, 4], got {boxes.shape}")
  batch = boxes.shape[0]
  scales = np.asarray(scales, dtype=np.float64)
  if scales.shape == (batch,):
    scales = np.stack([scales, scales], axis=-1)
  if scales.shape != (batch, 2):
    raise ValueError(f"scales must have shape [{batch}] or [{batch}, 2], got {scales.shape}")
  if not np.all(scales > 0):
    raise ValueError(f"scales must be positive, got {scales.tolist()}")
  sizes = _as_sizes(original_sizes, batch, "original_sizes")
  factors = np.tile(scales, 2)[:, None, :]            # [B, 1, 4] as (y, x, y, x)
  limits = np.tile(sizes, 2)[:, None, :].astype(np.float64)
  return np.clip(boxes / factors, 0.0, limits)


# ------------------------------------------------------- class <-> category ids

def class_to_category_array(class_to_category_id: ClassToCategory) -> np.ndarray:
  """Returns int64[C] with entry c = the original category id of contiguous class c.

  Accepts a dict {class index: category id} (keys may be strings of ints, as in
  JSON label maps) whose keys are exactly 0..C-1, or a sequence/array indexed
  by class.
  """
  if isinstance(class_to_category_id, Mapping):
    try:
      items = sorted((int(k), v) for k, v in class_to_category_id.items())
    except (TypeError, ValueError) as e:
      raise ValueError(f"class_to_category_id keys must be integer class indices: {e}") from e
    keys = [k for k, _ in items]
    if keys != list(range(len(keys))):
      raise ValueError("class_to_category_id keys must be the contiguous class indices "
                       f"0..{len(keys) - 1}, got {keys[:10]}{'...' if len(keys) > 10 else ''}")
    values = [v for _, v in items]
  else:
    values = np.asarray(class_to_category_id)
    if values.ndim != 1:
      raise ValueError(f"class_to_category_id must be 1-D (indexed by class), got shape {values.shape}")
  lookup = np.asarray(values)
  if lookup.size == 0:
    raise ValueError("class_to_category_id is empty: it needs one category id per class")
  if not np.issubdtype(lookup.dtype, np.integer):
    as_float = lookup.astype(np.float64)
    if not np.all(as_float == np.round(as_float)):
      raise ValueError(f"class_to_category_id values must be integer category ids, got {lookup.tolist()}")
  lookup = lookup.astype(np.int64)
  unique, counts = np.unique(lookup, return_counts=True)
  if np.any(counts > 1):
    raise ValueError(f"class_to_category_id maps several classes to category id {unique[counts > 1][0]}")
  return lookup


# --------------------------------------------------------------- ground truth

def build_coco_ground_truth(
    image_ids: Sequence[int],
    image_sizes: ArrayLike,
    boxes_yxyx: Sequence[ArrayLike],
    category_ids: Sequence[ArrayLike],
    category_names: Mapping[int, str],
    is_crowd: Optional[Sequence[ArrayLike]] = None,
    areas: Optional[Sequence[ArrayLike]] = None,
) -> Dict[str, Any]:
  """Builds a COCO ground-truth dict ("images", "annotations", "categories").

  Args:
    image_ids: [N] COCO image ids, unique.
    image_sizes: [N, 2] original (height, width).
    boxes_yxyx: per image, float[M_i, 4] yxyx boxes in original pixels.
    category_ids: per image, int[M_i] original category ids.
    category_names: {category id: name}; every category id used must be in it,
      and every entry becomes a category (also those without annotations).
    is_crowd: per image, int/bool[M_i]; None = no crowd regions.
    areas: per image, float[M_i] annotation areas (COCO "area", which sets the
      small/medium/large bucket); None = the box areas.

  Returns:
    A dict accepted by pycocotools; annotation ids run from 1 (pycocotools
    reads id 0 as "unmatched").
  """
  ids = [int(i) for i in np.asarray(image_ids).reshape(-1)]
  sizes = _as_sizes(image_sizes, len(ids), "image_sizes")
  for name, per_image in (("boxes_yxyx", boxes_yxyx), ("category_ids", category_ids),
                          ("is_crowd", is_crowd), ("areas", areas)):
    if per_image is not None and len(per_image) != len(ids):
      raise ValueError(f"{name} has {len(per_image)} entries but image_ids has {len(ids)}")
  _check_unique(ids, "image_ids")
  names = {int(k): str(v) for k, v in category_names.items()}
  images = [{"id": image_id, "height": int(h), "width": int(w)}
            for image_id, (h, w) in zip(ids, sizes.tolist())]
  annotations: List[Dict[str, Any]] = []
  for i, image_id in enumerate(ids):
    boxes = np.asarray(boxes_yxyx[i], dtype=np.float64)
    if boxes.size == 0:
      boxes = np.zeros((0, 4))
    if boxes.ndim != 2 or boxes.shape[1] != 4:
      raise ValueError(f"image_id {image_id}: boxes_yxyx must have shape [M, 4], got {boxes.shape}")
    count = boxes.shape[0]
    cats = _per_image_vector(category_ids[i], count, "category_ids", image_id).astype(np.int64)
    crowd = (np.zeros(count, np.int64) if is_crowd is None else
             _per_image_vector(is_crowd[i], count, "is_crowd", image_id).astype(np.int64))
    xywh = boxes_yxyx_to_coco_xywh(boxes)
    area = (xywh[:, 2] * xywh[:, 3] if areas is None else
            _per_image_vector(areas[i], count, "areas", image_id).astype(np.float64))
    if not np.all(np.isfinite(boxes)):
      raise ValueError(f"image_id {image_id}: ground-truth boxes are not finite")
    for box, cat, crowd_flag, box_area in zip(xywh.tolist(), cats.tolist(), crowd.tolist(),
                                              area.tolist()):
      if cat not in names:
        raise ValueError(f"image_id {image_id}: ground-truth category id {cat} is not in "
                         f"category_names (known ids: {sorted(names)[:20]})")
      annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                          "bbox": box, "area": box_area, "iscrowd": int(crowd_flag != 0)})
  categories = [{"id": cid, "name": names[cid]} for cid in sorted(names)]
  return {"images": images, "annotations": annotations, "categories": categories}


def validate_coco_ground_truth(dataset: Mapping[str, Any], source: str = "ground truth") -> None:
  """What pycocotools needs for box evaluation (retinanet.coco.validate_coco, evaluation mode);
  raises retinanet.coco.CocoFormatError (a ValueError) naming the record and field."""
  coco.validate_coco(dataset, source, for_evaluation=True)


def load_coco_ground_truth(path: str) -> Dict[str, Any]:
  """Reads and validates a COCO annotations JSON (local path or gs://)."""
  dataset = coco.read_coco_json(path, for_evaluation=True)
  logger.info("Loaded COCO ground truth %s: %d images, %d annotations, %d categories", path,
              len(dataset["images"]), len(dataset["annotations"]), len(dataset["categories"]))
  return dataset


# ----------------------------------------------------------------- detections

def detections_to_coco_results(
    image_ids: ArrayLike,
    boxes_yxyx_original_pixels: ArrayLike,
    scores: ArrayLike,
    classes_contiguous: ArrayLike,
    valid_detections: ArrayLike,
    class_to_category: np.ndarray,
) -> List[Dict[str, Any]]:
  """Converts a padded batch of detections to COCO results dicts.

  Args:
    image_ids: [B] COCO image ids.
    boxes_yxyx_original_pixels: float[B, K, 4] yxyx boxes in original pixels.
    scores: float[B, K].
    classes_contiguous: int[B, K] class indices 0..C-1.
    valid_detections: int[B]; only the first valid_detections[b] rows count.
    class_to_category: int64[C] from `class_to_category_array`.

  Returns:
    [{"image_id", "category_id", "bbox": [x, y, w, h], "score"}], the COCO
    results format.
  """
  ids = _as_int_vector(image_ids, "image_ids")
  batch = len(ids)
  boxes = np.asarray(boxes_yxyx_original_pixels, dtype=np.float64)
  if boxes.ndim != 3 or boxes.shape[0] != batch or boxes.shape[2] != 4:
    raise ValueError(f"boxes_yxyx_original_pixels must have shape [{batch}, K, 4], got {boxes.shape}")
  slots = boxes.shape[1]
  scores = np.asarray(scores, dtype=np.float64)
  classes = np.asarray(classes_contiguous)
  for name, value in (("scores", scores), ("classes_contiguous", classes)):
    if value.shape != (batch, slots):
      raise ValueError(f"{name} must have shape [{batch}, {slots}] like the boxes, got {value.shape}")
  if not np.issubdtype(classes.dtype, np.integer):
    if not np.all(classes == np.round(classes)):
      raise ValueError("classes_contiguous must hold integer class indices")
  classes = classes.astype(np.int64)
  valid = _as_int_vector(valid_detections, "valid_detections")
  if valid.shape != (batch,) or np.any(valid < 0) or np.any(valid > slots):
    raise ValueError(f"valid_detections must be [{batch}] counts in 0..{slots}, got {valid.tolist()}")
  num_classes = len(class_to_category)
  results: List[Dict[str, Any]] = []
  for b, image_id in enumerate(ids.tolist()):
    n = int(valid[b])
    image_classes = classes[b, :n]
    outside = (image_classes < 0) | (image_classes >= num_classes)
    if np.any(outside):
      raise ValueError(f"image_id {image_id}: class index {image_classes[outside][0]} is outside "
                       f"0..{num_classes - 1} of the class-to-category mapping (does the model's "
                       "num_classes match the label map?)")
    if not (np.all(np.isfinite(boxes[b, :n])) and np.all(np.isfinite(scores[b, :n]))):
      raise ValueError(f"image_id {image_id}: detection boxes or scores are not finite")
    xywh = boxes_yxyx_to_coco_xywh(boxes[b, :n]).tolist()
    for box, score, category in zip(xywh, scores[b, :n].tolist(),
                                    class_to_category[image_classes].tolist()):
      results.append({"image_id": image_id, "category_id": category, "bbox": box, "score": score})
  return results


# ----------------------------------------------------------------- evaluation

def evaluate_coco(
    ground_truth: Mapping[str, Any],
    detections: Sequence[Mapping[str, Any]],
    image_ids: Optional[Sequence[int]] = None,
    source: str = "ground truth",
    backend: str = DEFAULT_BACKEND,
) -> Dict[str, Any]:
  """Scores COCO results against ground truth with COCOeval (bbox) of `backend`.

  Args:
    ground_truth: a validated COCO dict (`load_coco_ground_truth`,
      `build_coco_ground_truth`); it is not modified.
    detections: COCO results dicts; may be empty.
    image_ids: the images evaluated (also those without detections, which
      count as misses); None = every ground-truth image.
    source: names the ground truth in error messages.

  Returns:
    {"AP", ..., "ARl": the 12 COCOeval stats (-1 where pycocotools finds no
    ground truth, e.g. APs without small objects),
     "per_class": [{"category_id", "name", "AP", "num_ground_truth"}] for every
       ground-truth category; AP is None when the class has no non-crowd
       ground truth in the evaluated images (undefined, not 0),
     "summary": COCOeval's 12-line summary text,
     "num_images", "num_detections"}.
  """
  start = time.time()
  gt_image_ids = {image["id"] for image in ground_truth["images"]}
  eval_ids = sorted(gt_image_ids if image_ids is None else {int(i) for i in image_ids})
  if not eval_ids:
    raise ValueError(f"{source}: no images to evaluate (no update() calls / no images)")
  missing = [i for i in eval_ids if i not in gt_image_ids]
  if missing:
    raise ValueError(f"image_id {missing[0]} (and {len(missing) - 1} more) has no ground truth "
                     f"in {source}: evaluate images of the same split")
  eval_set = set(eval_ids)
  category_ids = {category["id"] for category in ground_truth["categories"]}
  for det in detections:
    if det["image_id"] not in eval_set:
      raise ValueError(f"a detection has image_id {det['image_id']}, which is not among the "
                       "evaluated images")
    if det["category_id"] not in category_ids:
      raise ValueError(f"a detection has category_id {det['category_id']}, which is not a "
                       f"category of {source}")

  # COCOeval adds keys ('ignore', '_ignore', ids) to the dicts it gets: give it copies.
  dataset = dict(ground_truth)
  dataset["annotations"] = [dict(ann) for ann in ground_truth["annotations"]]
  coco_class, coco_eval_class = coco_backend(backend)
  chatter = io.StringIO()
  with contextlib.redirect_stdout(chatter):
    coco_gt = coco_class()
    coco_gt.dataset = dataset
    coco_gt.createIndex()
    coco_dt = _load_results(coco_class, coco_gt, detections)
    coco_eval = coco_eval_class(coco_gt, coco_dt, iouType="bbox")
    coco_eval.params.imgIds = eval_ids
    coco_eval.evaluate()
    coco_eval.accumulate()
  summary = io.StringIO()
  with contextlib.redirect_stdout(summary):
    coco_eval.summarize()

  result: Dict[str, Any] = {name: float(value)
                            for name, value in zip(COCO_METRIC_NAMES, coco_eval.stats)}
  result["per_class"] = _per_class_ap(coco_eval, ground_truth, eval_set)
  result["pr_curves"] = pr_curves(coco_eval)
  # pycocotools' 12 lines (faster_coco_eval adds AR@0.5 and AR@0.75 after them).
  lines = summary.getvalue().rstrip("\n").splitlines()
  result["summary"] = "\n".join(lines[:len(COCO_METRIC_NAMES)])
  result["num_images"] = len(eval_ids)
  result["num_detections"] = len(detections)
  logger.info("COCO evaluation against %s: %d images, %d detections -> AP %.4f AP50 %.4f "
              "(%.1f s, %s)", source, len(eval_ids), len(detections), result["AP"], result["AP50"],
              time.time() - start, backend)
  return result


def _load_results(coco_class, coco_gt, detections: Sequence[Mapping[str, Any]]):
  """COCO.loadRes, except that no detections gives an empty result set (loadRes([]) crashes)."""
  if detections:
    return coco_gt.loadRes([dict(det) for det in detections])
  coco_dt = coco_class()
  coco_dt.dataset = {"images": list(coco_gt.dataset["images"]),
                     "categories": list(coco_gt.dataset["categories"]), "annotations": []}
  coco_dt.createIndex()
  return coco_dt


def _per_class_ap(coco_eval, ground_truth: Mapping[str, Any],
                  eval_set: set) -> List[Dict[str, Any]]:
  """AP@[.50:.95] per category from COCOeval's precision array (area all, maxDets 100)."""
  precision = coco_eval.eval["precision"]  # [T, R, K, A, M]
  names = {category["id"]: str(category.get("name", category["id"]))
           for category in ground_truth["categories"]}
  counts: Dict[Any, int] = {}
  for ann in ground_truth["annotations"]:
    if ann["image_id"] in eval_set and not ann["iscrowd"]:
      counts[ann["category_id"]] = counts.get(ann["category_id"], 0) + 1
  per_class = []
  for k, category_id in enumerate(coco_eval.params.catIds):
    values = precision[:, :, k, AREA_ALL_INDEX, MAX_DETS_100_INDEX]
    values = values[values > COCO_NO_GROUND_TRUTH]
    per_class.append({
        "category_id": category_id,
        "name": names[category_id],
        "AP": float(np.mean(values)) if values.size else None,
        "num_ground_truth": counts.get(category_id, 0),
    })
  return per_class


PR_CURVE_IOUS = (0.5, 0.75)


def pr_curves(coco_eval) -> Dict[str, Any]:
  """Precision-recall curves (area all, 100 detections) at IoU 0.5 and 0.75 from
  COCOeval's accumulated precision array [T, R, K, A, M].

  Returns {"recall": the 101 recall points, "iou": {"0.5": {"all": [101], "per_class":
  {"<category_id>": [101]}}, "0.75": ...}} (string keys, as JSON keeps them). "all" averages the classes that have ground
  truth at each recall point, so its mean is exactly COCOeval's AP50 / AP75; a
  class without ground truth has no curve.
  """
  precision = coco_eval.eval["precision"]
  curves: Dict[str, Any] = {"recall": [float(r) for r in coco_eval.params.recThrs], "iou": {}}
  for iou in PR_CURVE_IOUS:
    t = int(np.argmin(np.abs(np.asarray(coco_eval.params.iouThrs) - iou)))
    values = precision[t, :, :, AREA_ALL_INDEX, MAX_DETS_100_INDEX]  # [R, K]
    valid = values > COCO_NO_GROUND_TRUTH
    counts = valid.sum(axis=1)
    overall = np.where(counts > 0, np.where(valid, values, 0).sum(axis=1) / np.maximum(counts, 1),
                       0.0)
    per_class = {str(category_id): [float(v) for v in values[:, k]]  # str: JSON round trip
                 for k, category_id in enumerate(coco_eval.params.catIds) if valid[:, k].all()}
    curves["iou"][f"{iou:g}"] = {"all": [float(v) for v in overall], "per_class": per_class}
  return curves


def scalar_metrics(result: Mapping[str, Any], per_class_prefix: str = "AP_per_class/") -> Dict[str, float]:
  """The 12 COCO numbers plus "<prefix><name>" per class with a defined AP (for summaries)."""
  scalars = {name: float(result[name]) for name in COCO_METRIC_NAMES}
  for entry in result.get("per_class", []):
    if entry["AP"] is not None:
      scalars[f"{per_class_prefix}{entry['name']}"] = float(entry["AP"])
  return scalars


class COCOEvaluator:
  """Accumulates detections over an eval set and scores them with COCOeval.

  Ground truth is either fixed (a COCO annotations JSON or dict) or, when
  none is given, accumulated batch by batch with `add_ground_truth` from the
  eval dataset. The images evaluated are exactly those passed to `update`
  (an image with no valid detection still counts, with all its objects
  missed), so evaluating a subset of a JSON's images is correct.
  """

  def __init__(self, class_to_category_id: ClassToCategory, *,
               ground_truth: Optional[Mapping[str, Any]] = None,
               category_names: Optional[Mapping[int, str]] = None,
               source: str = "ground truth", backend: str = DEFAULT_BACKEND) -> None:
    """Builds an evaluator with fixed or accumulated ground truth.

    Args:
      class_to_category_id: contiguous class index -> original category id
        (dict or array; see `class_to_category_array`).
      ground_truth: a COCO dict; None = accumulate it with `add_ground_truth`.
      category_names: {category id: name} for accumulated ground truth
        (missing names become "category_<id>"); with a ground-truth dict the
        names come from its categories.
      source: names the ground truth in logs and errors.
      backend: the COCOeval implementation, one of BACKENDS.
    """
    coco_backend(backend)  # fail now on an unknown name
    self._backend = backend
    self._class_to_category = class_to_category_array(class_to_category_id)
    self._source = source
    if ground_truth is not None:
      if category_names is not None:
        raise ValueError("category_names is only for accumulated ground truth; a ground-truth "
                         "dict brings its own categories")
      validate_coco_ground_truth(ground_truth, source)
      known = {category["id"] for category in ground_truth["categories"]}
      unknown = [c for c in self._class_to_category.tolist() if c not in known]
      if unknown:
        raise ValueError(f"class_to_category_id maps to category id {unknown[0]}, which is not a "
                         f"category of {source}: use the label map of this dataset")
      self._ground_truth: Optional[Mapping[str, Any]] = ground_truth
      self._category_names: Dict[int, str] = {
          category["id"]: str(category.get("name", category["id"]))
          for category in ground_truth["categories"]}
    else:
      names = {int(k): str(v) for k, v in (category_names or {}).items()}
      self._ground_truth = None
      self._category_names = {c: names.get(c, f"category_{c}")
                              for c in self._class_to_category.tolist()}
    self.reset()

  @classmethod
  def from_annotations_file(cls, path: str, class_to_category_id: ClassToCategory,
                            backend: str = DEFAULT_BACKEND) -> "COCOEvaluator":
    """An evaluator against a COCO annotations JSON (local path or gs://)."""
    return cls(class_to_category_id, ground_truth=load_coco_ground_truth(path), source=path,
               backend=backend)

  @property
  def accumulates_ground_truth(self) -> bool:
    return self._ground_truth is None

  @property
  def detections(self) -> List[Dict[str, Any]]:
    """The COCO results so far (a new list; write it with `write_detections_json`)."""
    return list(self._detections)

  @property
  def image_ids(self) -> List[int]:
    """The images passed to `update` so far, in order."""
    return list(self._image_ids)

  def reset(self) -> None:
    """Forgets detections and, when accumulating, the ground truth (for the next eval)."""
    self._detections: List[Dict[str, Any]] = []
    self._image_ids: List[int] = []
    self._seen_images: set = set()
    self._gt_image_ids: List[int] = []
    self._gt_sizes: List[List[int]] = []
    self._gt_boxes: List[np.ndarray] = []
    self._gt_category_ids: List[np.ndarray] = []
    self._gt_is_crowd: List[np.ndarray] = []
    self._gt_areas: List[np.ndarray] = []

  def add_ground_truth(self, image_ids: ArrayLike, original_sizes: ArrayLike,
                       boxes_yxyx_original_pixels: ArrayLike, category_ids: ArrayLike,
                       num_boxes: ArrayLike, is_crowd: Optional[ArrayLike] = None,
                       areas: Optional[ArrayLike] = None,
                       is_valid: Optional[ArrayLike] = None) -> None:
    """Adds a padded batch of ground truth (only when built without a ground-truth dict).

    Args:
      image_ids: [B] COCO image ids.
      original_sizes: [B, 2] original (height, width).
      boxes_yxyx_original_pixels: float[B, N, 4] yxyx boxes in original pixels.
      category_ids: int[B, N] ORIGINAL category ids (not contiguous indices).
      num_boxes: int[B]; rows past num_boxes[b] are padding.
      is_crowd: int/bool[B, N]; None = no crowd regions.
      areas: float[B, N] COCO annotation areas (they set the small/medium/large
        bucket; COCO's are segmentation areas); None = box areas.
      is_valid: bool [B]; False rows are batch padding and dropped.
    """
    if not self.accumulates_ground_truth:
      raise ValueError(f"this evaluator uses the fixed ground truth of {self._source}; "
                       "build it without ground_truth to accumulate ground truth")
    (image_ids, original_sizes, boxes_yxyx_original_pixels, category_ids, num_boxes, is_crowd,
     areas) = _select_rows(is_valid, image_ids=image_ids, original_sizes=original_sizes,
                           boxes=boxes_yxyx_original_pixels, category_ids=category_ids,
                           num_boxes=num_boxes, is_crowd=is_crowd, areas=areas)
    ids = _as_int_vector(image_ids, "image_ids")
    batch = len(ids)
    sizes = _as_sizes(original_sizes, batch, "original_sizes")
    boxes = np.asarray(boxes_yxyx_original_pixels, dtype=np.float64)
    if boxes.ndim != 3 or boxes.shape[0] != batch or boxes.shape[2] != 4:
      raise ValueError(f"boxes_yxyx_original_pixels must have shape [{batch}, N, 4], got {boxes.shape}")
    slots = boxes.shape[1]
    per_box = {"category_ids": category_ids, "is_crowd": is_crowd, "areas": areas}
    arrays = {}
    for name, value in per_box.items():
      if value is None:
        continue
      arrays[name] = np.asarray(value)
      if arrays[name].shape != (batch, slots):
        raise ValueError(f"{name} must have shape [{batch}, {slots}] like the boxes, "
                         f"got {arrays[name].shape}")
    counts = _as_int_vector(num_boxes, "num_boxes")
    if counts.shape != (batch,) or np.any(counts < 0) or np.any(counts > slots):
      raise ValueError(f"num_boxes must be [{batch}] counts in 0..{slots}, got {counts.tolist()}")
    seen = set(self._gt_image_ids)
    for b, image_id in enumerate(ids.tolist()):
      if image_id in seen:
        raise ValueError(f"ground truth for image_id {image_id} was added twice (is the eval "
                         "dataset repeated?)")
      seen.add(image_id)
      n = int(counts[b])
      cats = arrays["category_ids"][b, :n].astype(np.int64)
      unknown = [c for c in cats.tolist() if c not in self._category_names]
      if unknown:
        raise ValueError(f"image_id {image_id}: ground-truth category id {unknown[0]} is not in "
                         "class_to_category_id (category_ids must be ORIGINAL category ids of "
                         "the label map)")
      self._gt_image_ids.append(image_id)
      self._gt_sizes.append(sizes[b].tolist())
      self._gt_boxes.append(boxes[b, :n])
      self._gt_category_ids.append(cats)
      self._gt_is_crowd.append(np.zeros(n, np.int64) if is_crowd is None
                               else arrays["is_crowd"][b, :n].astype(np.int64))
      box_area = (boxes[b, :n, 2] - boxes[b, :n, 0]) * (boxes[b, :n, 3] - boxes[b, :n, 1])
      self._gt_areas.append(box_area if areas is None
                            else arrays["areas"][b, :n].astype(np.float64))

  def update(self, image_ids: ArrayLike, boxes_yxyx_original_pixels: ArrayLike,
             scores: ArrayLike, classes_contiguous: ArrayLike,
             valid_detections: ArrayLike, is_valid: Optional[ArrayLike] = None) -> None:
    """Adds a padded batch of detections (see `detections_to_coco_results`).

    `is_valid` (bool [B]) drops batch-padding rows (the eval input's
    `is_valid`); None = every row is a real image.
    """
    ids, boxes, scores, classes, valid = _select_rows(
        is_valid, image_ids=image_ids, boxes=boxes_yxyx_original_pixels, scores=scores,
        classes=classes_contiguous, valid_detections=valid_detections)
    ids = _as_int_vector(ids, "image_ids")
    results = detections_to_coco_results(ids, boxes, scores, classes, valid,
                                         self._class_to_category)
    for image_id in ids.tolist():
      if image_id in self._seen_images:
        raise ValueError(f"detections for image_id {image_id} were added twice (is the eval "
                         "dataset repeated, or padded by a distribution strategy?)")
    if len(set(ids.tolist())) != len(ids):
      raise ValueError(f"image_ids of one batch repeat an id: {ids.tolist()}")
    self._seen_images.update(ids.tolist())
    self._image_ids.extend(ids.tolist())
    self._detections.extend(results)

  def ground_truth(self) -> Mapping[str, Any]:
    """The COCO ground-truth dict evaluated against (fixed, or built from what was added)."""
    if self._ground_truth is not None:
      return self._ground_truth
    return build_coco_ground_truth(self._gt_image_ids, np.asarray(self._gt_sizes).reshape(-1, 2),
                                   self._gt_boxes, self._gt_category_ids, self._category_names,
                                   is_crowd=self._gt_is_crowd, areas=self._gt_areas)

  def evaluate(self) -> Dict[str, Any]:
    """Scores everything added so far; see `evaluate_coco` for the keys.

    Also returns "detections": the COCO results list.
    """
    if not self._image_ids:
      raise ValueError("COCOEvaluator.evaluate: no images were added with update()")
    source = self._source if self._ground_truth is not None else "the accumulated ground truth"
    result = evaluate_coco(self.ground_truth(), self._detections, self._image_ids, source=source,
                           backend=self._backend)
    result["detections"] = list(self._detections)
    return result


# ------------------------------------------------------------------------ I/O

def write_metrics_json(path: str, metrics: Mapping[str, Any]) -> None:
  """Writes metrics as strict JSON (NaN -> null, numpy -> Python); local or gs://."""
  text = json.dumps(_to_json(metrics), indent=2, sort_keys=True, allow_nan=False)
  fileio.write_text(path, text + "\n")


def read_metrics_json(path: str) -> Dict[str, Any]:
  """Reads a file written by `write_metrics_json`."""
  data = fileio.read_json(path)
  if not isinstance(data, dict):
    raise ValueError(f"{path}: expected a JSON object of metrics, got {type(data).__name__}")
  return data


def write_detections_json(path: str, detections: Sequence[Mapping[str, Any]]) -> None:
  """Writes COCO results (a JSON list, loadable with COCO.loadRes); local or gs://."""
  fileio.write_json(path, _to_json(list(detections)))


def _to_json(value: Any) -> Any:
  """Plain JSON values: numpy scalars/arrays to Python, NaN/Inf to None."""
  if isinstance(value, Mapping):
    return {str(k): _to_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_to_json(v) for v in value]
  if isinstance(value, np.ndarray):
    return _to_json(value.tolist())
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


# ---------------------------------------------------------------- validation

def _select_rows(is_valid: Optional[ArrayLike], **batch: Optional[ArrayLike]) -> List[Any]:
  """The given batch arrays (None stays None) restricted to rows where is_valid is True."""
  if is_valid is None:
    return list(batch.values())
  mask = np.asarray(is_valid)
  if mask.ndim != 1 or mask.dtype != np.bool_:
    raise ValueError(f"is_valid must be a bool vector [B], got {mask.dtype} {mask.shape}")
  selected = []
  for name, value in batch.items():
    if value is None:
      selected.append(None)
      continue
    array = np.asarray(value)
    if array.ndim < 1 or array.shape[0] != mask.shape[0]:
      raise ValueError(f"{name} has {array.shape[0] if array.ndim else 0} rows but is_valid has "
                       f"{mask.shape[0]}")
    selected.append(array[mask])
  return selected


def _as_int_vector(value: ArrayLike, name: str) -> np.ndarray:
  array = np.asarray(value)
  if array.ndim != 1:
    raise ValueError(f"{name} must be a vector [B], got shape {array.shape}")
  if array.size and not np.issubdtype(array.dtype, np.integer):
    if not np.all(array == np.round(array)):
      raise ValueError(f"{name} must hold integers, got {array.tolist()}")
  return array.astype(np.int64)


def _as_sizes(value: ArrayLike, batch: int, name: str) -> np.ndarray:
  sizes = np.asarray(value)
  if sizes.shape != (batch, 2):
    raise ValueError(f"{name} must have shape [{batch}, 2] (height, width), got {sizes.shape}")
  if not np.all(sizes > 0):
    raise ValueError(f"{name} must be positive (height, width), got {sizes.tolist()}")
  return sizes.astype(np.int64)


def _per_image_vector(value: ArrayLike, count: int, name: str, image_id: int) -> np.ndarray:
  array = np.asarray(value).reshape(-1)
  if array.shape != (count,):
    raise ValueError(f"image_id {image_id}: {name} has {array.shape[0]} entries for {count} boxes")
  return array


def _check_unique(ids: Sequence[int], name: str) -> None:
  seen = set()
  for i in ids:
    if i in seen:
      raise ValueError(f"{name} repeats id {i}")
    seen.add(i)
