"""Runs a model over an eval split and scores it with COCO metrics.

The glue between the input pipeline (eval parser: resize/pad, image ids,
original sizes and scales), the model + post-processing, and the pycocotools
evaluator. Ground truth is a COCO annotations JSON when one is given (the
data stage writes the original annotations of the converted images:
data.convert.ground_truth_path), as COCO's own evaluation does; without one it
is read back from the same TFRecords (boxes as converted, at most
input.max_instances objects per image: truncation is counted and logged).
Used by the in-training callback, the continuous evaluator and the Evaluator
component.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from retinanet import coco
from retinanet import config as config_lib
from retinanet import factory
from retinanet import model_dir as model_dir_lib
from retinanet.dataloader import input_reader
from retinanet.dataloader import schema
from retinanet.evaluation import coco_metrics
from retinanet.ops import orientation
from retinanet.ops import postprocess
from retinanet.task import RetinaNetTask

logger = logging.getLogger(__name__)

@dataclasses.dataclass
class EvalResult:
  metrics: Dict[str, float]          # the 12 COCO numbers (AP, AP50, ..., ARl)
  per_class_ap: List[Dict[str, Any]]  # [{category_id, name, AP, num_ground_truth}]
  detections: List[Dict[str, Any]]   # COCO results format, original pixels
  summary: str                        # COCOeval's 12-line summary
  num_images: int
  model_seconds: float                # input + model + NMS
  cocoeval_seconds: float             # pycocotools evaluate/accumulate/summarize
  pr_curves: Optional[Dict[str, Any]] = None  # coco_metrics.pr_curves


def build_detect_fn(model: tf.Module, model_config: config_lib.ModelConfig,
                    postprocess_config: config_lib.PostprocessConfig
                    ) -> Callable[[tf.Tensor], Dict[str, tf.Tensor]]:
  """A tf.function: (normalized images [B, H, W, 3], covered [B, 2]) -> detections in
  model-input pixels. `covered` is the (height, width) each resized image covers before
  its padding (original size x scale): boxes are clipped to it, as in the SavedModel."""
  layout = factory.build_anchors(model_config)
  anchors = layout.boxes()
  per_level = list(layout.counts_per_level.values())
  p = postprocess_config

  @tf.function
  def detect(images: tf.Tensor, covered: tf.Tensor) -> Dict[str, tf.Tensor]:
    outputs = model(images, training=False)
    return postprocess.generate_detections(
        outputs["class_outputs"], outputs["box_outputs"], anchors, covered,
        nms_mode=p.nms_mode, pre_nms_top_k=p.pre_nms_top_k, score_threshold=p.score_threshold,
        iou_threshold=p.iou_threshold, soft_nms_sigma=p.soft_nms_sigma,
        max_detections=p.max_detections, max_detections_per_class=p.max_detections_per_class,
        variances=model_config.box_variances, anchors_per_level=per_level)

  return detect


def make_evaluator(label_map: coco.LabelMap, ground_truth_path: Optional[str] = None,
                   backend: str = coco_metrics.DEFAULT_BACKEND) -> coco_metrics.COCOEvaluator:
  """A COCOEvaluator against the annotations JSON, or accumulating from the records."""
  category_ids = np.asarray(label_map.category_ids, np.int64)
  if ground_truth_path:
    return coco_metrics.COCOEvaluator.from_annotations_file(ground_truth_path, category_ids,
                                                            backend=backend)
  return coco_metrics.COCOEvaluator(
      category_ids, category_names=dict(zip(label_map.category_ids, label_map.names)),
      backend=backend)


def evaluate(model: tf.Module, config: config_lib.ExperimentConfig, file_pattern: str,
             label_map: coco.LabelMap, max_images: Optional[int] = None,
             ground_truth_path: Optional[str] = None,
             evaluator: Optional[coco_metrics.COCOEvaluator] = None) -> EvalResult:
  """COCO metrics of `model` on the TFRecords of `file_pattern` (each image once).

  `ground_truth_path`: a COCO annotations JSON holding (at least) the images
  of the records; None = ground truth from the records. `evaluator` (from
  `make_evaluator`, reset here) saves re-reading the JSON on repeated calls.
  """
  if max_images is not None:
    config = dataclasses.replace(config, eval=dataclasses.replace(config.eval,
                                                                  max_images=max_images))
  dataset = RetinaNetTask(config).build_inputs(file_pattern, is_training=False)(None)
  detect = build_detect_fn(model, config.model, config.postprocess)
  category_ids = np.asarray(label_map.category_ids, np.int64)
  if evaluator is None:
    evaluator = make_evaluator(label_map, ground_truth_path, config.eval.coco_backend)
  evaluator.reset()
  start = time.time()
  num_images = 0
  truncated = 0
  for images, labels in dataset:
    covered = tf.cast(labels["original_size"], tf.float32) * labels["scale"]
    detections = {k: v.numpy() for k, v in detect(images, covered).items()}
    labels = {k: v.numpy() for k, v in labels.items()}
    valid = labels["is_valid"]
    to_original = lambda b: coco_metrics.boxes_to_original_pixels(  # noqa: E731
        b, labels["scale"], labels["original_size"])
    if evaluator.accumulates_ground_truth:
      gt_classes = labels["gt_classes"]
      # Padding rows (class -1) come last; num_boxes marks where they start.
      gt_categories = np.where(gt_classes >= 0, category_ids[np.maximum(gt_classes, 0)], -1)
      evaluator.add_ground_truth(labels["image_id"], labels["original_size"],
                                 to_original(labels["gt_boxes"]), gt_categories,
                                 (gt_classes >= 0).sum(axis=1), is_crowd=labels["gt_is_crowd"],
                                 areas=labels.get("gt_areas"), is_valid=valid)
      truncated += int(labels["num_truncated"][valid].sum())
    boxes = to_original(detections["boxes"])
    evaluator.update(labels["image_id"], boxes, detections["scores"], detections["classes"],
                     detections["valid_detections"], is_valid=valid)
    num_images += int(valid.sum())
  model_seconds = time.time() - start
  if truncated:
    logger.warning("Ground truth from the records lost %d objects beyond input.max_instances=%d: "
                   "AP is computed without them (evaluate against the annotations JSON, "
                   "data.convert.ground_truth_path, to score every object)", truncated,
                   config.input.max_instances)
  return _score(evaluator, num_images, model_seconds)


def _score(evaluator: coco_metrics.COCOEvaluator, num_images: int,
           model_seconds: float) -> EvalResult:
  start = time.time()
  result = evaluator.evaluate()
  cocoeval_seconds = time.time() - start
  metrics = {name: float(result[name]) for name in coco_metrics.COCO_METRIC_NAMES}
  logger.info("Evaluated %d images: AP %.4f AP50 %.4f AP75 %.4f (model %.1f s, COCOeval %.1f s)",
              num_images, metrics["AP"], metrics["AP50"], metrics["AP75"], model_seconds,
              cocoeval_seconds)
  return EvalResult(metrics, result["per_class"], evaluator.detections, result["summary"],
                    num_images, model_seconds, cocoeval_seconds, result["pr_curves"])


_RECORD_KEYS = (schema.ENCODED, schema.IMAGE_ID, schema.HEIGHT, schema.WIDTH, schema.YMIN,
                schema.XMIN, schema.YMAX, schema.XMAX, schema.CATEGORY_ID, schema.IS_CROWD,
                schema.AREA, schema.ORIENTATION)


def _encoded_records(file_pattern: str, batch_size: int, max_images: int) -> tf.data.Dataset:
  """Batches of the raw records: encoded bytes, image ids and the stored ground truth."""
  spec = {key: schema.FEATURE_SPEC[key] for key in _RECORD_KEYS}
  files = input_reader.list_files(file_pattern)
  dataset = tf.data.TFRecordDataset(files, compression_type=input_reader.infer_compression(files))
  if max_images > 0:
    dataset = dataset.take(max_images)

  def parse(serialized):
    parsed = tf.io.parse_single_example(serialized, spec)
    parsed = {k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v
              for k, v in parsed.items()}
    parsed["num_objects"] = tf.size(parsed[schema.YMIN])
    return parsed

  return dataset.map(parse).padded_batch(batch_size).prefetch(2)


def evaluate_saved_model(export_dir: str, file_pattern: str, *,
                         ground_truth_path: Optional[str] = None, batch_size: int = 8,
                         max_images: int = 0) -> EvalResult:
  """COCO metrics of an exported SavedModel, called through its `serve_encoded_with_id`
  signature: the production pre- and post-processing, on the records' original bytes.

  Ground truth: `ground_truth_path` (the data stage's annotations JSON), or the
  boxes stored in the records (every object; nothing is truncated here); both
  are in the displayed frame, so the detections of an export that keeps the
  stored pixel order (postprocess.apply_exif_orientation=false) are turned
  into it first.
  """
  from retinanet.serving import export  # pylint: disable=g-import-not-at-top
  serve = tf.saved_model.load(export_dir).signatures[export.SERVE_ENCODED_WITH_ID]
  displayed = export.applies_exif_orientation(export_dir)

  def predict(encoded: tf.Tensor, image_ids: tf.Tensor) -> Dict[str, np.ndarray]:
    out = {k: v.numpy() for k, v in serve(encoded_images=encoded, image_id=image_ids).items()}
    return out if displayed else export.outputs_in_displayed_frame(out, encoded.numpy())

  return evaluate_predictions(predict, export_dir, file_pattern,
                              ground_truth_path=ground_truth_path, batch_size=batch_size,
                              max_images=max_images)


def evaluate_image_detector(detect: Callable[[np.ndarray], Mapping[str, np.ndarray]],
                            model_dir: str, file_pattern: str, *,
                            ground_truth_path: Optional[str] = None,
                            max_images: int = 0) -> EvalResult:
  """COCO metrics of any detector with the serving contract, called one image at a time:
  detect(uint8 [1, H, W, 3]) -> the SavedModel's output dict (an ONNX or TFLite model,
  retinanet/serving/portable.py). `model_dir` gives the label map and COCO backend. Images
  are decoded as displayed (EXIF orientation applied), the frame of the ground truth."""

  from retinanet.serving import preprocess  # pylint: disable=g-import-not-at-top

  def predict(encoded: tf.Tensor, image_ids: tf.Tensor) -> Dict[str, np.ndarray]:
    outputs = [detect(preprocess.decode_image(data).numpy()[None]) for data in encoded]
    return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}

  return evaluate_predictions(predict, model_dir, file_pattern,
                              ground_truth_path=ground_truth_path, batch_size=1,
                              max_images=max_images)


def evaluate_predictions(predict: Callable[[tf.Tensor, tf.Tensor], Mapping[str, np.ndarray]],
                         model_dir: str, file_pattern: str, *,
                         ground_truth_path: Optional[str] = None, batch_size: int = 8,
                         max_images: int = 0) -> EvalResult:
  """COCO metrics of predict(encoded images [B], image ids [B]) -> serving outputs (boxes in
  original pixels, class_ids, valid_detections) over the records of file_pattern."""
  label_map = coco.load_label_map(model_dir_lib.label_map_path(model_dir))
  config_file = model_dir_lib.config_path(model_dir)
  backend = (config_lib.load_config(config_file).eval.coco_backend
             if tf.io.gfile.exists(config_file) else coco_metrics.DEFAULT_BACKEND)
  evaluator = make_evaluator(label_map, ground_truth_path, backend)
  start = time.time()
  num_images = 0
  for batch in _encoded_records(file_pattern, batch_size, max_images):
    out = predict(batch[schema.ENCODED], batch[schema.IMAGE_ID])
    ids = batch[schema.IMAGE_ID].numpy()
    if evaluator.accumulates_ground_truth:
      sizes = np.stack([batch[schema.HEIGHT].numpy(), batch[schema.WIDTH].numpy()], axis=-1)
      normalized = np.stack([batch[k].numpy() for k in (schema.YMIN, schema.XMIN, schema.YMAX,
                                                         schema.XMAX)], axis=-1)
      evaluator.add_ground_truth(ids, sizes, normalized * np.tile(sizes, 2)[:, None, :],
                                 batch[schema.CATEGORY_ID].numpy(),
                                 batch["num_objects"].numpy(),
                                 is_crowd=batch[schema.IS_CROWD].numpy(),
                                 areas=batch[schema.AREA].numpy())
    evaluator.update(ids, out["boxes"], out["scores"], out["class_ids"],
                     out["valid_detections"])
    num_images += len(ids)
  return _score(evaluator, num_images, time.time() - start)


def make_eval_callback(config: config_lib.ExperimentConfig, *, file_pattern: str,
                       label_map: coco.LabelMap, ground_truth_path: Optional[str] = None,
                       summary_dir: Optional[str] = None
                       ) -> Callable[[tf.Module, int], Dict[str, float]]:
  """fn(model, step) -> scalar metrics, for the trainer's eval_every callback.

  With `summary_dir`, each evaluation also writes PR curves and sample images with
  detections to TensorBoard (`write_eval_summaries`) in `summary_dir`.
  """
  evaluator = make_evaluator(label_map, ground_truth_path,  # the JSON is read once
                             config.eval.coco_backend)
  writer = tf.summary.create_file_writer(summary_dir) if summary_dir else None

  def eval_fn(model: tf.Module, step: int) -> Dict[str, float]:
    result = evaluate(model, config, file_pattern, label_map, evaluator=evaluator)
    logger.info("[global_step %d] COCO AP %.4f AP50 %.4f", step, result.metrics["AP"],
                result.metrics["AP50"])
    if writer is not None:
      write_eval_summaries(writer, step, result, file_pattern=file_pattern,
                           ground_truth_path=ground_truth_path, label_map=label_map)
    return coco_metrics.scalar_metrics({**result.metrics, "per_class": result.per_class_ap})
  return eval_fn


SUMMARY_IMAGES = 3


def pr_curve_summary_pb(name: str, recall: Sequence[float], precision: Sequence[float],
                        num_ground_truth: int):
  """A TensorBoard PR-curve summary proto of one COCO curve (precision at 101 recall points).

  The plugin plots thresholds in increasing order: here threshold i is the recall point
  1 - i / 100, so the curve runs from full recall to none. Counts are the ones that
  curve implies (TP = recall x ground truth, FP = TP (1 - p) / p, TN = 0).
  """
  from tensorboard.plugins.pr_curve import summary as pr_summary  # pylint: disable=g-import-not-at-top
  r = np.asarray(recall, np.float64)[::-1]
  p = np.clip(np.asarray(precision, np.float64)[::-1], 0.0, 1.0)
  tp = r * num_ground_truth
  fp = np.where(p > 0, tp * (1 - p) / np.maximum(p, 1e-12), 0.0)
  return pr_summary.raw_data_pb(
      name, true_positive_counts=tp, false_positive_counts=fp,
      true_negative_counts=np.zeros_like(tp), false_negative_counts=num_ground_truth - tp,
      precision=p, recall=r, num_thresholds=len(r))


def write_eval_summaries(writer: tf.summary.SummaryWriter, step: int, result: EvalResult, *,
                         file_pattern: str, ground_truth_path: Optional[str],
                         label_map: coco.LabelMap, max_images: int = SUMMARY_IMAGES) -> None:
  """PR curves (all classes and per class, IoU 0.5 and 0.75) and the first `max_images`
  images with detections (and ground truth, given the annotations JSON) drawn."""
  from retinanet.evaluation import report  # pylint: disable=g-import-not-at-top
  names = dict(zip(label_map.category_ids, label_map.names))
  counts = {c["category_id"]: int(c["num_ground_truth"]) for c in result.per_class_ap}
  with writer.as_default(step=step):
    if result.pr_curves:
      for iou, curves in result.pr_curves["iou"].items():
        pbs = [pr_curve_summary_pb(f"eval_pr/iou{iou}/all", result.pr_curves["recall"],
                                   curves["all"], sum(counts.values()))]
        pbs += [pr_curve_summary_pb(f"eval_pr/iou{iou}/{names.get(int(k), k)}",
                                    result.pr_curves["recall"], v, counts.get(int(k), 0))
                for k, v in curves["per_class"].items()]
        for pb in pbs:
          tf.summary.experimental.write_raw_pb(pb.SerializeToString(), step=step)
    ids = sorted({d["image_id"] for d in result.detections})[:max_images]
    images = load_record_images(file_pattern, ids)
    gts: Dict[int, list] = {}
    if ground_truth_path:
      for ann in coco_metrics.load_coco_ground_truth(ground_truth_path)["annotations"]:
        gts.setdefault(ann["image_id"], []).append(ann)
    index = {category_id: k for k, category_id in enumerate(label_map.category_ids)}
    drawn = [np.asarray(report.draw_sample(
        images[i], gts.get(i, []), [d for d in result.detections if d["image_id"] == i], index,
        names, max_side=512)) for i in ids if i in images]
    for k, image in enumerate(drawn):
      tf.summary.image(f"eval_images/{k}", image[None], step=step)
  writer.flush()


def load_record_images(file_pattern: str, image_ids: Sequence[int]) -> Dict[int, np.ndarray]:
  """{image id: decoded RGB uint8 image, as displayed} of the records in `file_pattern` with
  those ids."""
  wanted = {int(i) for i in image_ids}
  images: Dict[int, np.ndarray] = {}
  if not wanted:
    return images
  for batch in _encoded_records(file_pattern, 32, 0):
    for image_id, encoded, turn in zip(batch[schema.IMAGE_ID].numpy(),
                                       batch[schema.ENCODED].numpy(),
                                       batch[schema.ORIENTATION].numpy()):
      if int(image_id) in wanted:
        images[int(image_id)] = orientation.orient_image(
            tf.io.decode_image(encoded, channels=3, expand_animations=False), turn).numpy()
    if len(images) == len(wanted):
      break
  return images


def write_report(path: str, result: EvalResult, *, title: str, file_pattern: str,
                 ground_truth_path: Optional[str], blessing: Mapping[str, Any],
                 baseline: Optional[EvalResult] = None,
                 details: Sequence[Tuple[str, str]] = ()) -> str:
  """Writes the HTML evaluation report (retinanet/evaluation/report.py) of `result`.

  Sample images need the annotations JSON (`ground_truth_path`) to draw the
  ground truth; without it the report has every chart but no image grid.
  """
  from retinanet.evaluation import report  # pylint: disable=g-import-not-at-top
  samples = []
  if ground_truth_path:
    ground_truth = coco_metrics.load_coco_ground_truth(ground_truth_path)
    evaluated = sorted(int(i["id"]) for i in ground_truth["images"])  # the whole split
    groups = report.pick_samples(report.image_errors(ground_truth, result.detections,
                                                     evaluated))
    images = load_record_images(file_pattern, [i for _, ids in groups for i in ids])
    names = {c["id"]: str(c.get("name", c["id"])) for c in ground_truth["categories"]}
    index = {category_id: k for k, category_id in enumerate(sorted(names))}
    gts: Dict[int, list] = {}
    for ann in ground_truth["annotations"]:
      gts.setdefault(ann["image_id"], []).append(ann)
    dets: Dict[int, list] = {}
    for det in result.detections:
      dets.setdefault(det["image_id"], []).append(det)
    for group, ids in groups:
      drawn = [(f"image {i}: {len(gts.get(i, []))} objects",
                report.draw_sample(images[i], gts.get(i, []), dets.get(i, []), index, names))
               for i in ids if i in images]
      samples.append((group, drawn))
  text = report.build_report(
      title=title, metrics=result.metrics, per_class=result.per_class_ap,
      pr_curves=result.pr_curves, blessing=blessing,
      baseline_metrics=baseline.metrics if baseline is not None else None,
      samples=samples, details=details)
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(text)
  logger.info("Wrote the evaluation report %s", path)
  return path
