"""SavedModel export: images in, detections in original image pixels out.

`export_saved_model` wraps a trained RetinaNet in a `DetectionModule` whose
graph does everything a client would otherwise re-implement: decode (encoded
signatures; a JPEG is turned by its EXIF orientation, read in-graph, unless the
export sets postprocess.apply_exif_orientation=false), the evaluation
preprocessing (resize keeping the aspect ratio so the image fits the model
input, normalize, pad bottom/right), the model, box
decoding + NMS with the postprocess settings chosen at export time, boxes
mapped back to original image pixels, and class indices mapped to the
dataset's category ids.

Signatures (all batched; B may be any size):

| name                    | inputs                                                        |
|-------------------------|---------------------------------------------------------------|
| `serving_default`       | `images`: uint8 [B, H, W, 3] (the same function as `serve_images`) |
| `serve_images`          | `images`: uint8 [B, H, W, 3] RGB; any H, W, shared by the batch |
| `serve_images_with_id`  | `images` as above and `image_id`: int64 [B]                   |
| `serve_encoded`         | `encoded_images`: string [B] JPEG/PNG/BMP/GIF bytes; each is decoded (and turned by its EXIF orientation) and resized on its own, so sizes may differ |
| `serve_encoded_with_id` | `encoded_images` as above and `image_id`: int64 [B]           |

SavedModel signatures cannot have optional inputs, so `image_id` is required
by the `*_with_id` signatures; the others return `image_id` = 0 .. B-1.

Outputs of every signature (K = postprocess max_detections):

| key                | dtype, shape      | meaning                                                  |
|--------------------|-------------------|----------------------------------------------------------|
| `boxes`            | float32 [B, K, 4] | `[ymin, xmin, ymax, xmax]` in ORIGINAL image pixels, clipped to the image (*) |
| `scores`           | float32 [B, K]    | class probability (decayed by soft-NMS), descending      |
| `class_ids`        | int32 [B, K]      | contiguous class index 0 .. num_classes-1                |
| `category_ids`     | int64 [B, K]      | the dataset's original category id (label map)           |
| `valid_detections` | int32 [B]         | entries [0, valid) of each image are detections          |
| `image_id`         | int64 [B]         | passed through (or 0 .. B-1)                             |
| `image_size`       | int32 [B, 2]      | original (height, width) of each image (*)               |

(*) Of the image as displayed: for the encoded signatures, the JPEG turned by its
EXIF orientation (a phone photo stored 4032x3024 with orientation 6 gives
image_size [4032, 3024] and boxes on the upright picture). An export with
`postprocess.apply_exif_orientation=false` keeps the stored (sensor) order
there. The uint8 signatures take pixels as given: orient them before the call
(ONNX and TFLite models take such pixels too).

Every valid box has a positive area: boxes that clip to nothing (in the padding of the
resized input) are dropped before the top K. Entries at or beyond `valid_detections` are
padding: boxes and scores 0,
`class_ids` and `category_ids` -1. COCO `[x, y, width, height]` is
`[xmin, ymin, xmax - xmin, ymax - ymin]` of `boxes`.

Python client:

  model = tf.saved_model.load(export_dir)   # or inference.resolve_saved_model_dir(base)
  with open("cat.jpg", "rb") as f:
    out = model.signatures["serve_encoded"](encoded_images=tf.constant([f.read()]))
  n = int(out["valid_detections"][0])
  boxes, class_ids = out["boxes"][0, :n], out["class_ids"][0, :n]  # names: load_label_map

Export directory (the Model-artifact layout of components/artifacts.py, so a
pushed model can be a Trainer `base_model` for fine-tuning):

  saved_model.pb, variables/   the SavedModel (what TF Serving loads)
  assets.extra/tf_serving_warmup_requests
                               TF Serving's warm-up file: PredictionLog records (each
                               signature at batch 1 and WARMUP_BATCH) that Serving replays
                               at load, so the first real request does not pay for tracing
  label_map.json               retinanet.coco.LabelMap JSON: index -> category id + name
  config.json                  the config the graph was built from (config_from_dict
                               accepts it; sections absent take their defaults)
  checkpoint/                  the latest training checkpoint (only with checkpoint_dir)
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras

from retinanet import coco
from retinanet import config as config_lib
from retinanet import factory
from retinanet import layout
from retinanet import model_dir as model_dir_lib
from retinanet import task
from retinanet.config import InputConfig, ModelConfig, NMS_MODES, PostprocessConfig
from retinanet.dataloader import preprocess_ops
from retinanet.ops import orientation as orientation_ops
from retinanet.ops import postprocess as postprocess_ops
from retinanet.serving import preprocess
from retinanet.training import checkpointing

logger = logging.getLogger(__name__)

SERVING_DEFAULT = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY  # "serving_default"
SERVE_IMAGES = "serve_images"
SERVE_IMAGES_WITH_ID = "serve_images_with_id"
SERVE_ENCODED = "serve_encoded"
SERVE_ENCODED_WITH_ID = "serve_encoded_with_id"
SIGNATURE_NAMES = (SERVING_DEFAULT, SERVE_IMAGES, SERVE_IMAGES_WITH_ID, SERVE_ENCODED,
                   SERVE_ENCODED_WITH_ID)

IMAGES_KEY = "images"
ENCODED_IMAGES_KEY = "encoded_images"
IMAGE_ID_KEY = "image_id"
OUTPUT_KEYS = ("boxes", "scores", "class_ids", "category_ids", "valid_detections", IMAGE_ID_KEY,
               "image_size")

# File names inside an export dir; equal to components.artifacts.MODEL_* (which
# retinanet/ cannot import: it pulls in TFX).

# Marks padding entries of `class_ids` / `category_ids`.
PADDING_CLASS = -1


# tf.function without autograph (a decorator, or called on a function): the exported graph
# calls TensorFlow ops and explicit tf.while_loops only, and autograph's source conversion of
# every layer the model calls took about a quarter of each export.
serving_function = functools.partial(tf.function, autograph=False)


class DetectionModule(tf.Module):
  """The exported graph: preprocessing, the model, postprocessing, box mapping.

  Every serve_* method returns the output dict of the module docstring.
  """

  def __init__(self, model: tf_keras.Model, *, input_size: Tuple[int, int],
               anchors: tf.Tensor, anchors_per_level: Sequence[int],
               mean_rgb: Sequence[float], stddev_rgb: Sequence[float],
               box_variances: Sequence[float], category_ids: Sequence[int], nms_mode: str,
               pre_nms_top_k: int, score_threshold: float, iou_threshold: float,
               soft_nms_sigma: float, max_detections: int, max_detections_per_class: int,
               apply_exif_orientation: bool = True):
    super().__init__(name="retinanet_detection")
    if nms_mode not in NMS_MODES:
      raise ValueError(f"DetectionModule: nms_mode={nms_mode!r} is not one of {NMS_MODES}")
    if not category_ids:
      raise ValueError("DetectionModule: category_ids is empty; pass one per model class")
    # The Keras model stays out of the SavedModel object graph (a lambda is not
    # tracked): saving it would serialize every layer's call, which is slow and
    # fails for layers returning dicts keyed by int level. Its variables are
    # tracked, which is all the exported functions need.
    self._run_model = lambda images: model(images, training=False)
    self.model_variables = list(model.variables)
    self._input_size = (int(input_size[0]), int(input_size[1]))
    # numpy, not tf.constant: each trace embeds them as graph constants (an eager
    # tensor would be a captured input, which tf2onnx and TFLite cannot resolve).
    self._anchors = np.asarray(anchors, np.float32)
    self._mean_rgb = tuple(float(v) for v in mean_rgb)
    self._stddev_rgb = tuple(float(v) for v in stddev_rgb)
    self._apply_exif_orientation = bool(apply_exif_orientation)
    self._category_ids = np.asarray([int(c) for c in category_ids], np.int64)
    self._num_classes = len(category_ids)
    self._postprocess_args = dict(
        nms_mode=nms_mode, pre_nms_top_k=int(pre_nms_top_k),
        score_threshold=float(score_threshold), iou_threshold=float(iou_threshold),
        soft_nms_sigma=float(soft_nms_sigma), max_detections=int(max_detections),
        max_detections_per_class=int(max_detections_per_class),
        variances=tuple(float(v) for v in box_variances),
        anchors_per_level=tuple(int(c) for c in anchors_per_level))
    # One traced graph of model + postprocess, called by every signature (so
    # it is traced and stored once). Inputs as in `preprocess.ServingBatch`.
    self.detect_preprocessed = serving_function(self._detect_preprocessed, input_signature=[
        tf.TensorSpec([None, self._input_size[0], self._input_size[1], 3], tf.float32,
                      name="images"),
        tf.TensorSpec([None, 2], tf.float32, name="scale"),
        tf.TensorSpec([None, 2], tf.int32, name="image_size"),
        tf.TensorSpec([None], tf.int64, name=IMAGE_ID_KEY)])

  def detect(self, batch: preprocess.ServingBatch, image_id: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Model + postprocess of a preprocessed batch -> the serving outputs."""
    return self.detect_preprocessed(batch.images, batch.scale, batch.image_size, image_id)

  @property
  def nms_mode(self) -> str:
    return self._postprocess_args["nms_mode"]

  def _detect_preprocessed(self, images: tf.Tensor, scale: tf.Tensor, image_size: tf.Tensor,
                           image_id: tf.Tensor, **nms_implementation) -> Dict[str, tf.Tensor]:
    outputs = self._run_model(images)
    postprocess_args = dict(self._postprocess_args, **nms_implementation)
    # Boxes are clipped to the part of the input the image covers (its resized size, not
    # the zero padding beside and below it): a box in the padding is empty and dropped.
    covered = tf.cast(image_size, tf.float32) * scale
    detections = postprocess_ops.generate_detections(
        tf.cast(outputs["class_outputs"], tf.float32),
        tf.cast(outputs["box_outputs"], tf.float32),
        self._anchors, covered, **postprocess_args)
    boxes = preprocess_ops.boxes_to_original_image(
        tf.cast(detections["boxes"], tf.float32), scale, image_size)
    valid = tf.cast(detections["valid_detections"], tf.int32)
    mask = tf.sequence_mask(valid, tf.shape(boxes)[1])
    class_ids = tf.cast(detections["classes"], tf.int32)
    category_ids = tf.gather(self._category_ids,
                             tf.clip_by_value(class_ids, 0, self._num_classes - 1))
    return {
        "boxes": tf.where(mask[..., None], boxes, 0.0),
        "scores": tf.where(mask, tf.cast(detections["scores"], tf.float32), 0.0),
        "class_ids": tf.where(mask, class_ids, PADDING_CLASS),
        "category_ids": tf.where(mask, category_ids, tf.constant(PADDING_CLASS, tf.int64)),
        "valid_detections": valid,
        IMAGE_ID_KEY: tf.cast(image_id, tf.int64),
        "image_size": image_size,
    }

  def _images(self, images: tf.Tensor) -> preprocess.ServingBatch:
    return preprocess.preprocess_batch(images, self._input_size, self._mean_rgb, self._stddev_rgb)

  def detect_images(self, images: tf.Tensor, **nms_implementation) -> Dict[str, tf.Tensor]:
    """uint8 [B, H, W, 3] -> the serving outputs (image_id = 0 .. B-1); the body of
    `serve_images` and of the portable (ONNX, TFLite) graphs.

    `nms_implementation` (generate_detections arguments) swaps the NMS for an
    equivalent one that a runtime supports (portable.py: ONNX computes
    per_class_hard through `combined`, TFLite global_soft through the loop).
    """
    image_id = tf.range(tf.shape(images, tf.int64)[0])
    if not nms_implementation:
      return self.detect(self._images(images), image_id)
    batch = self._images(images)
    return self._detect_preprocessed(batch.images, batch.scale, batch.image_size, image_id,
                                     **nms_implementation)

  def _encoded(self, encoded: tf.Tensor) -> preprocess.ServingBatch:
    return preprocess.preprocess_encoded(encoded, self._input_size, self._mean_rgb,
                                         self._stddev_rgb, self._apply_exif_orientation)

  @serving_function(
      input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=IMAGES_KEY)])
  def serve_images(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """uint8 [B, H, W, 3] RGB images sharing one size -> detections."""
    return self.detect_images(images)

  @serving_function(input_signature=[
      tf.TensorSpec([None, None, None, 3], tf.uint8, name=IMAGES_KEY),
      tf.TensorSpec([None], tf.int64, name=IMAGE_ID_KEY)])
  def serve_images_with_id(self, images: tf.Tensor, image_id: tf.Tensor) -> Dict[str, tf.Tensor]:
    """uint8 [B, H, W, 3] RGB images and int64 [B] ids -> detections."""
    return self.detect(self._images(images), image_id)

  @serving_function(input_signature=[tf.TensorSpec([None], tf.string, name=ENCODED_IMAGES_KEY)])
  def serve_encoded(self, encoded_images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """string [B] encoded images (any sizes) -> detections."""
    return self.detect(self._encoded(encoded_images),
                       tf.range(tf.shape(encoded_images, tf.int64)[0]))

  @serving_function(input_signature=[
      tf.TensorSpec([None], tf.string, name=ENCODED_IMAGES_KEY),
      tf.TensorSpec([None], tf.int64, name=IMAGE_ID_KEY)])
  def serve_encoded_with_id(self, encoded_images: tf.Tensor,
                            image_id: tf.Tensor) -> Dict[str, tf.Tensor]:
    """string [B] encoded images and int64 [B] ids -> detections."""
    return self.detect(self._encoded(encoded_images), image_id)

  def signatures(self) -> Dict[str, Any]:
    """{signature name: tf.function} for tf.saved_model.save. The functions, not concrete
    functions: tracing them before the save would trace them twice, since a trace made
    outside the save's context is not reused inside it."""
    return {
        SERVING_DEFAULT: self.serve_images,
        SERVE_IMAGES: self.serve_images,
        SERVE_IMAGES_WITH_ID: self.serve_images_with_id,
        SERVE_ENCODED: self.serve_encoded,
        SERVE_ENCODED_WITH_ID: self.serve_encoded_with_id,
    }


def build_detection_module(model: tf_keras.Model, *, model_config: ModelConfig,
                           input_config: InputConfig, postprocess_config: PostprocessConfig,
                           label_map: coco.LabelMap) -> DetectionModule:
  """Maps the config sections to a DetectionModule (the only config -> args step)."""
  if label_map.num_classes != model_config.num_classes:
    raise ValueError(
        f"export: the label map has {label_map.num_classes} classes but model.num_classes="
        f"{model_config.num_classes}; export with the label map the model was trained on")
  layout = factory.build_anchors(model_config)
  p = postprocess_config
  return DetectionModule(
      model, input_size=tuple(model_config.input_size), anchors=layout.boxes(),
      anchors_per_level=list(layout.counts_per_level.values()),
      mean_rgb=input_config.mean_rgb, stddev_rgb=input_config.stddev_rgb,
      box_variances=model_config.box_variances, category_ids=label_map.category_ids,
      nms_mode=p.nms_mode, pre_nms_top_k=p.pre_nms_top_k, score_threshold=p.score_threshold,
      iou_threshold=p.iou_threshold, soft_nms_sigma=p.soft_nms_sigma,
      max_detections=p.max_detections, max_detections_per_class=p.max_detections_per_class,
      apply_exif_orientation=p.apply_exif_orientation)


def _plain(value: Any) -> Any:
  if isinstance(value, (tuple, list)):
    return [_plain(v) for v in value]
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in value.items()}
  return value


def serving_config_dict(model_config: ModelConfig, input_config: InputConfig,
                        postprocess_config: PostprocessConfig) -> Dict[str, Any]:
  """The config sections the graph is built from, as a partial ExperimentConfig dict."""
  return _plain({"model": dataclasses.asdict(model_config),
                 "input": dataclasses.asdict(input_config),
                 "postprocess": dataclasses.asdict(postprocess_config)})


def copy_checkpoint(checkpoint: str, destination: str) -> str:
  """Copies one training checkpoint into `destination`; returns the new prefix.

  `checkpoint` is a prefix or a directory (its newest complete checkpoint,
  `checkpointing.find_checkpoint`). Only that checkpoint's files are copied,
  plus a `checkpoint` state file, so `tf.train.latest_checkpoint(destination)`
  and `checkpointing.restore_model(model, destination)` find it.
  """
  prefix = checkpointing.find_checkpoint(checkpoint)
  files = tf.io.gfile.glob(prefix + ".*")
  tf.io.gfile.makedirs(destination)
  for path in files:
    tf.io.gfile.copy(path, os.path.join(destination, os.path.basename(path)), overwrite=True)
  name = os.path.basename(prefix)
  with tf.io.gfile.GFile(os.path.join(destination, "checkpoint"), "w") as f:
    f.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
  return os.path.join(destination, name)


def export_saved_model(model: tf_keras.Model, *, model_config: ModelConfig,
                       input_config: InputConfig, postprocess_config: PostprocessConfig,
                       label_map: coco.LabelMap, export_dir: str,
                       checkpoint_dir: Optional[str] = None) -> str:
  """Writes the SavedModel + label_map.json + config.json (module docstring); returns export_dir.

  Args:
    model: the RetinaNet holding the weights to serve (restore the checkpoint,
      EMA weights included, before calling); called as
      `model(normalized float32 images, training=False)` and returning
      {"class_outputs": [B, N, C] logits, "box_outputs": [B, N, 4] deltas}.
    model_config: input size, anchors, box variances (must match `model`).
    input_config: mean_rgb / stddev_rgb for normalization.
    postprocess_config: NMS mode and thresholds, fixed in the graph.
    label_map: contiguous index -> category id and name (retinanet.coco.LabelMap).
    export_dir: where to write (local or gs://); must not hold a SavedModel yet.
    checkpoint_dir: a training checkpoint directory (or prefix); when given,
      its newest complete checkpoint is copied to `<export_dir>/checkpoint/`,
      so fine-tuning can start from a pushed model.
  """
  if tf.io.gfile.exists(os.path.join(export_dir, layout.SAVED_MODEL_FILE)):
    raise FileExistsError(f"export: {export_dir} already holds a SavedModel; pick a new export_dir")
  module = build_detection_module(model, model_config=model_config, input_config=input_config,
                                  postprocess_config=postprocess_config, label_map=label_map)
  tf.saved_model.save(module, export_dir, signatures=module.signatures())
  write_warmup_requests(export_dir, model_config.input_size)
  coco.save_label_map(label_map, os.path.join(export_dir, layout.LABEL_MAP_FILE))
  with tf.io.gfile.GFile(os.path.join(export_dir, layout.CONFIG_FILE), "w") as f:
    json.dump(serving_config_dict(model_config, input_config, postprocess_config), f, indent=2,
              sort_keys=True)
  if checkpoint_dir:
    copy_checkpoint(checkpoint_dir, os.path.join(export_dir, layout.CHECKPOINT_DIR))
  logger.info("Exported %s (nms_mode=%s) to %s", model.name, postprocess_config.nms_mode,
              export_dir)
  return export_dir


WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
WARMUP_BATCH = 8
# Signatures warmed and their inputs (encoded signatures warm JPEG decoding too).
WARMUP_SIGNATURES = (SERVING_DEFAULT, SERVE_ENCODED)


def warmup_requests(input_size: Sequence[int], batch_sizes: Sequence[int] = (1, WARMUP_BATCH)):
  """TF Serving PredictionLog protos: each of WARMUP_SIGNATURES at each batch size, on
  mid-grey images of the model's input size."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import predict_pb2, prediction_log_pb2  # pylint: disable=g-import-not-at-top
  height, width = (int(v) for v in input_size)
  image = np.full((height, width, 3), 128, np.uint8)
  jpeg = tf.io.encode_jpeg(image).numpy()
  logs = []
  for batch in batch_sizes:
    for name in WARMUP_SIGNATURES:
      request = predict_pb2.PredictRequest()
      request.model_spec.signature_name = name
      if name == SERVE_ENCODED:
        request.inputs["encoded_images"].CopyFrom(tf.make_tensor_proto([jpeg] * batch))
      else:
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.stack([image] * batch)))
      logs.append(prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(request=request)))
  return logs


def write_warmup_requests(export_dir: str, input_size: Sequence[int]) -> str:
  """Writes `<export_dir>/assets.extra/tf_serving_warmup_requests` (a TFRecord file)."""
  path = os.path.join(export_dir, WARMUP_FILE)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.TFRecordWriter(path) as writer:
    for log in warmup_requests(input_size):
      writer.write(log.SerializeToString())
  return path


def applies_exif_orientation(export_dir: str) -> bool:
  """Whether the export's encoded signatures return the displayed frame (its config.json's
  postprocess.apply_exif_orientation; absent in exports made before the setting existed,
  whose graphs kept the stored pixel order)."""
  path = os.path.join(export_dir, layout.CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    return False
  with tf.io.gfile.GFile(path) as f:
    return bool(json.load(f).get("postprocess", {}).get("apply_exif_orientation", False))


def outputs_in_displayed_frame(outputs: Mapping[str, np.ndarray],
                               encoded: Sequence[bytes]) -> Dict[str, np.ndarray]:
  """Encoded-signature outputs of an export that keeps the stored pixel order -> the
  same detections on the displayed images: each image's boxes turned by its JPEG's EXIF
  orientation (the graph's own reader), image_size swapped for orientations 5-8.
  Padding entries stay 0."""
  out = dict(outputs)
  boxes, sizes = [], []
  for i, data in enumerate(encoded):
    orientation = orientation_ops.exif_orientation(tf.constant(data))
    turned = orientation_ops.boxes_to_displayed_yxyx(outputs["boxes"][i],
                                                     outputs["image_size"][i], orientation)
    valid = np.arange(len(turned)) < int(outputs["valid_detections"][i])
    boxes.append(np.where(valid[:, None], turned.numpy(), 0.0).astype(np.float32))
    sizes.append(orientation_ops.displayed_size(*(int(v) for v in outputs["image_size"][i]),
                                                int(orientation)))
  if boxes:
    out["boxes"] = np.stack(boxes)
    out["image_size"] = np.asarray(sizes, outputs["image_size"].dtype)
  return out


def load_label_map(export_dir: str) -> coco.LabelMap:
  """The label map of an export dir, read without loading the SavedModel."""
  return coco.load_label_map(os.path.join(export_dir, layout.LABEL_MAP_FILE))


apply_postprocess_overrides = model_dir_lib.apply_postprocess_overrides


def postprocess_json(postprocess_config: PostprocessConfig) -> str:
  """Canonical JSON of post-processing settings (what a blessing records and a push checks)."""
  return json.dumps(dataclasses.asdict(postprocess_config), sort_keys=True)


def effective_postprocess(model_dir: str,
                          overrides: Optional[Mapping[str, Any]] = None) -> PostprocessConfig:
  """The model's post-processing settings with `overrides` applied."""
  config = config_lib.load_config(model_dir_lib.config_path(model_dir))
  return apply_postprocess_overrides(config, overrides).postprocess


def serving_model_for(model_dir: str, overrides: Optional[Mapping[str, Any]],
                      export_dir: str) -> Tuple[str, PostprocessConfig]:
  """(SavedModel dir, its post-processing) of a model with `overrides` applied.

  The model's own SavedModel when the overrides change nothing (and it has
  one); otherwise a new export from its checkpoint into `export_dir`.
  """
  config = config_lib.load_config(model_dir_lib.config_path(model_dir))
  wanted = apply_postprocess_overrides(config, overrides).postprocess
  if wanted == config.postprocess and model_dir_lib.has_saved_model(model_dir):
    return model_dir_lib.resolve(model_dir), wanted
  export_model_dir(model_dir, export_dir, postprocess_overrides=overrides)
  return export_dir, wanted


def export_model_dir(model_dir: str, export_dir: str, *,
                     postprocess_overrides: Optional[Mapping[str, Any]] = None,
                     use_ema: bool = True) -> str:
  """Exports a trained model directory (the Trainer's Model artifact or a pushed model).

  `model_dir` holds `checkpoint/` (training checkpoints), `config.json` (the
  ExperimentConfig) and `label_map.json`. The newest complete checkpoint is
  restored (EMA weights when present and use_ema), `postprocess_overrides`
  ({"nms_mode": "per_class_soft", "iou_threshold": 0.6 or "0.6"}, keys of
  PostprocessConfig; an unknown key raises ConfigError naming it) replace
  postprocess settings, and the result is written by `export_saved_model`
  with the checkpoint copied along; `<export_dir>/config.json` then holds the
  whole ExperimentConfig with the overrides applied. Returns export_dir.
  """
  model, config, label_map, prefix = task.load_model_dir(
      model_dir, postprocess_overrides=postprocess_overrides, use_ema=use_ema)
  export_saved_model(model, model_config=config.model, input_config=config.input,
                     postprocess_config=config.postprocess, label_map=label_map,
                     export_dir=export_dir, checkpoint_dir=prefix)
  config_lib.save_config(config, os.path.join(export_dir, layout.CONFIG_FILE))
  return export_dir
