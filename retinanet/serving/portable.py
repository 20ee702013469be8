"""Exports beside the SavedModel: ONNX, TFLite (float32, dynamic-range int8), TF-TRT FP16.

    python -m retinanet.serving.portable --model_dir=DIR --format=onnx --output=model.onnx
    python -m retinanet.serving.portable --model_dir=DIR --format=tflite_int8 --output=m.tflite
    python -m retinanet.serving.portable --model_dir=DIR --format=tftrt_fp16 --output=trt_dir/

`DIR` is a trained model directory (the Trainer's Model artifact, an export or
a pushed version: checkpoint/, config.json, label_map.json). ONNX and TFLite
models are traced from the same `export.DetectionModule` as the SavedModel,
through its `serve_images` body, so they have its contract:

  input   `images`: uint8 [B, H, W, 3] RGB, one size per batch (any B, H, W);
          decoded pixels, so no EXIF: turn a photo as displayed first
          (`preprocess.decode_image` does), boxes are in the frame given
  outputs `boxes` float32 [B, K, 4] yxyx in original pixels, `scores` [B, K],
          `class_ids` int32 [B, K], `category_ids` int64 [B, K],
          `valid_detections` int32 [B], `image_id` int64 [B], `image_size` int32 [B, 2]

Preprocessing (resize keeping the aspect ratio, normalize, pad), box decoding
and NMS are inside every file. Where NMS lives, per format:

  * ONNX: in the graph, as ONNX `NonMaxSuppression` (per class, hard).
    `combined` and `per_class_hard` (the same selection: hard NMS per class,
    max_detections_per_class each, then the best max_detections) and
    `global_hard` export; ONNX has no soft-NMS operator, so `per_class_soft` and
    `global_soft` raise `ExportError` naming the modes that do.
  * TFLite: every mode; NMS runs as TFLite builtins or TF Select ("Flex") ops,
    which `tf.lite.Interpreter` of the tensorflow wheel includes (a standalone
    runtime needs the Flex delegate linked in). `global_soft` runs as the
    vectorized NMS loop (`nms_implementation`): TFLite's soft-NMS op is wrong.
  * TF-TRT: a converted SavedModel; TensorRT takes the convolutions, TF runs
    the rest (NMS included). Needs an NVIDIA GPU with TensorRT.

`OnnxDetector` and `TfliteDetector` run the files with the SavedModel's
output dict, and `compare_detections` is the check that they agree with it
(same count per image, same classes, boxes within 1e-3 of the image size).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from retinanet import config as config_lib
from retinanet import console
from retinanet import fileio
from retinanet import model_dir as model_dir_lib
from retinanet import task
from retinanet.ops import box_ops
from retinanet.serving import export

logger = logging.getLogger(__name__)

ONNX = "onnx"
TFLITE = "tflite"
TFLITE_INT8 = "tflite_int8"
TFTRT_FP16 = "tftrt_fp16"
FORMATS = (ONNX, TFLITE, TFLITE_INT8, TFTRT_FP16)
# load_detector's name for the SavedModel itself (the reference every format is checked against).
SAVED_MODEL = "saved_model"
# File (or, for TF-TRT, directory) name of each format inside a pushed version.
FILENAMES = {ONNX: "model.onnx", TFLITE: "model.tflite", TFLITE_INT8: "model_int8.tflite",
             TFTRT_FP16: "tftrt_fp16"}
ONNX_NMS_MODES = ("combined", "per_class_hard", "global_hard")
ONNX_OPSET = 17
# Relative box tolerance of `compare_detections`: a fraction of the image's longer side.
BOX_TOLERANCE = 1e-3
# Formats the Pusher can push beside the SavedModel (TF-TRT is built on the serving GPU).
PUSHABLE_FORMATS = (ONNX, TFLITE, TFLITE_INT8)


class ExportError(ValueError):
  """The model cannot be written in the requested format (the message says why)."""


def parse_formats(text: str, allowed: Sequence[str] = PUSHABLE_FORMATS) -> List[str]:
  """"onnx,tflite" -> ["onnx", "tflite"]; unknown or repeated names raise ExportError."""
  formats = [f.strip() for f in text.split(",") if f.strip()]
  bad = [f for f in formats if f not in allowed]
  if bad:
    hint = (" (TF-TRT: convert on the serving GPU with python -m retinanet.serving.portable "
            "--format=tftrt_fp16)" if TFTRT_FP16 in bad else "")
    raise ExportError(f"export formats {bad} are not among {', '.join(allowed)}{hint}")
  if len(set(formats)) != len(formats):
    raise ExportError(f"export formats {formats} repeat a format")
  return formats


def nms_implementation(fmt: str, nms_mode: str) -> Dict[str, Any]:
  """generate_detections arguments that compute `nms_mode` with ops the format's runtime
  supports and runs correctly (DetectionModule.detect_images); {} = the SavedModel's."""
  if fmt == ONNX and nms_mode == "per_class_hard":
    # ONNX NonMaxSuppression is per class and hard: the same selection as combined
    # (hard NMS per class, max_detections_per_class each, then the best max_detections).
    return {"nms_mode": "combined"}
  if fmt in (TFLITE, TFLITE_INT8) and nms_mode == "global_soft":
    # TFLite's NON_MAX_SUPPRESSION_V5 returns the first box repeatedly under soft-NMS
    # (TF 2.16, measured): use the vectorized loop, as per_class_soft does.
    return {"global_nms_by_loop": True}
  return {}


def portable_function(module: export.DetectionModule, fmt: str) -> Any:
  """The module's `serve_images` body for format `fmt`: a tf.function of uint8 images
  [B, H, W, 3] -> the serving outputs."""
  implementation = nms_implementation(fmt, module.nms_mode)
  return export.serving_function(
      lambda images: module.detect_images(images, **implementation),
      input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=export.IMAGES_KEY)])


def check_onnx_nms_mode(nms_mode: str) -> None:
  if nms_mode not in ONNX_NMS_MODES:
    raise ExportError(
        f"ONNX export: nms_mode={nms_mode!r} cannot be exported: ONNX has no soft-NMS operator. "
        f"Export with one of {', '.join(ONNX_NMS_MODES)} (e.g. --postprocess nms_mode=combined), "
        "or serve soft-NMS with the SavedModel or TFLite")


def export_onnx(module: export.DetectionModule, path: str, opset: int = ONNX_OPSET) -> str:
  """Writes the module as an ONNX model at `path` (module docstring for the contract)."""
  import tf2onnx  # pylint: disable=g-import-not-at-top
  check_onnx_nms_mode(module.nms_mode)
  function = portable_function(module, ONNX)
  proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature,
                                           opset=opset)
  fileio.write_bytes(path, proto.SerializeToString())
  return path


def export_tflite(module: export.DetectionModule, path: str, quantize: bool = False) -> str:
  """Writes the module as a TFLite model: float32, or dynamic-range int8 weights."""
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [portable_function(module, TFLITE_INT8 if quantize else TFLITE).get_concrete_function()],
      module)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                         tf.lite.OpsSet.SELECT_TF_OPS]
  if quantize:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no dataset: dynamic range
  fileio.write_bytes(path, converter.convert())
  return path


@dataclasses.dataclass(frozen=True)
class TftrtOptions:
  """TF-TRT conversion settings (`tf.experimental.tensorrt.Converter`)."""
  precision: str = "FP16"
  max_workspace_bytes: int = 1 << 30
  # Batch sizes built ahead of time (one TensorRT profile each), at the model input size.
  build_batch_sizes: Sequence[int] = (1, 8)
  minimum_segment_size: int = 3

  def __post_init__(self):
    if self.precision not in ("FP32", "FP16"):
      raise ExportError(f"TF-TRT: precision={self.precision!r} is not FP32 or FP16 (INT8 needs "
                        "calibration data, which this exporter does not take)")
    if self.max_workspace_bytes < 1 << 20:
      raise ExportError(f"TF-TRT: max_workspace_bytes={self.max_workspace_bytes} is below 1 MiB")
    if not self.build_batch_sizes or min(self.build_batch_sizes) < 1:
      raise ExportError(f"TF-TRT: build_batch_sizes={list(self.build_batch_sizes)} must be >= 1")
    if self.minimum_segment_size < 1:
      raise ExportError("TF-TRT: minimum_segment_size must be >= 1")


def export_tftrt(saved_model_dir: str, output_dir: str, input_size: Sequence[int],
                 options: TftrtOptions = TftrtOptions()) -> str:
  """Converts the SavedModel's `serving_default` with TF-TRT and saves it to output_dir.

  The engines are built for `options.build_batch_sizes` images of `input_size`
  (dynamic shapes, one profile each) so serving does not build them on the
  first request. Raises ExportError without an NVIDIA GPU.
  """
  if not tf.config.list_physical_devices("GPU"):
    raise ExportError("TF-TRT needs an NVIDIA GPU with TensorRT; this machine has no GPU. "
                      "Run the conversion on the serving GPU type")
  from tensorflow.python.compiler.tensorrt import trt_convert as trt  # pylint: disable=g-import-not-at-top,g-direct-tensorflow-import
  params = trt.TrtConversionParams(precision_mode=options.precision,
                                   max_workspace_size_bytes=options.max_workspace_bytes,
                                   minimum_segment_size=options.minimum_segment_size)
  converter = trt.TrtGraphConverterV2(
      input_saved_model_dir=saved_model_dir, conversion_params=params,
      input_saved_model_signature_key=export.SERVING_DEFAULT, use_dynamic_shape=True,
      dynamic_shape_profile_strategy="Optimal")
  converter.convert()
  height, width = (int(v) for v in input_size)

  def inputs():
    for batch in options.build_batch_sizes:
      yield (tf.zeros([batch, height, width, 3], tf.uint8),)

  converter.build(input_fn=inputs)
  converter.save(output_dir)
  return output_dir


def load_module(model_dir: str, postprocess_overrides: Optional[Mapping[str, Any]] = None
                ) -> export.DetectionModule:
  """The DetectionModule of a trained model directory (EMA weights when present)."""
  model, config, label_map, _ = task.load_model_dir(model_dir,
                                                   postprocess_overrides=postprocess_overrides)
  return export.build_detection_module(model, model_config=config.model, input_config=config.input,
                                       postprocess_config=config.postprocess, label_map=label_map)


def export_format(model_dir: str, fmt: str, output: str,
                  postprocess_overrides: Optional[Mapping[str, Any]] = None,
                  tftrt_options: TftrtOptions = TftrtOptions()) -> str:
  """Writes `model_dir` in format `fmt` (one of FORMATS) at `output`; returns output.

  TF-TRT converts the directory's SavedModel (exported first, with the
  overrides, when the directory has none or they change post-processing).
  """
  if fmt not in FORMATS:
    raise ExportError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
  if fmt == TFTRT_FP16:
    config = config_lib.load_config(model_dir_lib.config_path(model_dir))
    saved_model, _ = export.serving_model_for(model_dir, postprocess_overrides,
                                              output.rstrip("/") + ".saved_model")
    return export_tftrt(saved_model, output, config.model.input_size, tftrt_options)
  if fmt == ONNX:
    wanted = export.effective_postprocess(model_dir, postprocess_overrides)
    check_onnx_nms_mode(wanted.nms_mode)  # before loading the model
  return _write_module(load_module(model_dir, postprocess_overrides), fmt, output)


def _write_module(module: export.DetectionModule, fmt: str, output: str) -> str:
  """Writes a loaded module as ONNX or TFLite (float32 / int8)."""
  if fmt == ONNX:
    return export_onnx(module, output)
  return export_tflite(module, output, quantize=fmt == TFLITE_INT8)


def export_formats(model_dir: str, formats: Sequence[str], output_dir: str,
                   postprocess_overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, str]:
  """{format: path} of each format written into output_dir under FILENAMES (the model is
  restored once for all of ONNX and TFLite)."""
  unknown = [f for f in formats if f not in FORMATS]
  if unknown:
    raise ExportError(f"unknown export format(s) {unknown}; choose from {', '.join(FORMATS)}")
  if ONNX in formats:
    check_onnx_nms_mode(export.effective_postprocess(model_dir, postprocess_overrides).nms_mode)
  tf.io.gfile.makedirs(output_dir)
  paths, module = {}, None
  for fmt in formats:
    output = os.path.join(output_dir, FILENAMES[fmt])
    if fmt == TFTRT_FP16:
      paths[fmt] = export_format(model_dir, fmt, output, postprocess_overrides)
      continue
    module = module or load_module(model_dir, postprocess_overrides)
    paths[fmt] = _write_module(module, fmt, output)
  return paths


def detection_recall(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
                     iou: float = 0.5) -> float:
  """Fraction of the reference's detections that the candidate has too (same class,
  IoU >= iou): how much of a float model a quantized one keeps. 1.0 when the
  reference has none."""
  found = total = 0
  for i, n_ref in enumerate(np.asarray(reference["valid_detections"])):
    n_new = int(candidate["valid_detections"][i])
    total += int(n_ref)
    if not n_ref or not n_new:
      continue
    overlap = box_ops.pairwise_iou_yxyx(
        np.asarray(reference["boxes"][i, :n_ref], np.float64),
        np.asarray(candidate["boxes"][i, :n_new], np.float64)).numpy()
    same = (np.asarray(reference["class_ids"][i, :n_ref])[:, None]
            == np.asarray(candidate["class_ids"][i, :n_new])[None, :])
    found += int(np.sum(np.any(same & (overlap >= iou), axis=1)))
  return found / total if total else 1.0


def export_verified_formats(model_dir: str, formats: Sequence[str], output_dir: str,
                            images: Sequence[np.ndarray]) -> Dict[str, Dict[str, Any]]:
  """Writes `formats` of model_dir (which must hold its SavedModel) and checks each against
  that SavedModel on `images` (one batch per image).

  ONNX and TFLite float32 must agree (`compare_detections`), or ExportError is
  raised naming the format and the first differences; TFLite int8 is checked
  to run and its `detection_recall` of the SavedModel's detections is
  recorded. TF-TRT is only written (it needs the GPU it will serve on).
  Returns {format: {"path", "sha256", "bytes", "check"}}.
  """
  from retinanet.serving import validate  # pylint: disable=g-import-not-at-top
  if not model_dir_lib.has_saved_model(model_dir):
    raise ExportError(f"{model_dir} holds no SavedModel to verify the formats against")
  paths = export_formats(model_dir, formats, output_dir)
  reference = load_detector(SAVED_MODEL, model_dir_lib.resolve(model_dir))
  references = [reference(image[None]) for image in images]
  manifest = {}
  for fmt, path in paths.items():
    entry = {"path": path}
    if fmt == TFTRT_FP16:
      entry["check"] = "not run (TF-TRT needs the serving GPU)"
    else:
      detector = load_detector(fmt, path)
      outputs = [detector(image[None]) for image in images]
      count = int(sum(r["valid_detections"].sum() for r in references))
      if fmt == TFLITE_INT8:
        recall = float(np.mean([detection_recall(r, o) for r, o in zip(references, outputs)]))
        entry["check"] = f"runs; keeps {recall:.3f} of the SavedModel's {count} detections"
        entry["detection_recall"] = recall
      else:
        problems = [p for r, o in zip(references, outputs) for p in compare_detections(r, o)]
        if problems:
          raise ExportError(f"{fmt}: detections differ from the SavedModel's: "
                            + "; ".join(problems[:3]))
        entry["check"] = (f"same detections as the SavedModel on {len(images)} images "
                          f"({count} detections)")
    if tf.io.gfile.isdir(path):
      entry["sha256"] = validate.saved_model_digest(path)
      entry["bytes"] = sum(tf.io.gfile.stat(os.path.join(root, name)).length
                           for root, _, names in tf.io.gfile.walk(path) for name in names)
    else:
      entry["sha256"] = validate.file_digest(path)
      entry["bytes"] = tf.io.gfile.stat(path).length
    manifest[fmt] = entry
  return manifest


class OnnxDetector:
  """Runs an exported ONNX model with onnxruntime: detector(uint8 [B, H, W, 3]) -> outputs."""

  def __init__(self, path: str, providers: Sequence[str] = ("CPUExecutionProvider",),
               threads: int = 0):
    import onnxruntime  # pylint: disable=g-import-not-at-top
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    if threads:
      options.intra_op_num_threads = threads
    self._session = onnxruntime.InferenceSession(fileio.read_bytes(path), options,
                                                 providers=list(providers))
    self._names = [o.name for o in self._session.get_outputs()]

  def __call__(self, images: np.ndarray) -> Dict[str, np.ndarray]:
    values = self._session.run(None, {export.IMAGES_KEY: np.asarray(images, np.uint8)})
    return dict(zip(self._names, values))


class TfliteDetector:
  """Runs an exported TFLite model: detector(uint8 [B, H, W, 3]) -> outputs."""

  def __init__(self, path: str, threads: Optional[int] = None):
    self._interpreter = tf.lite.Interpreter(model_content=fileio.read_bytes(path),
                                            num_threads=threads)
    self._runner = self._interpreter.get_signature_runner()

  def __call__(self, images: np.ndarray) -> Dict[str, np.ndarray]:
    return self._runner(**{export.IMAGES_KEY: np.asarray(images, np.uint8)})


def load_detector(fmt: str, path: str) -> Callable[[np.ndarray], Dict[str, np.ndarray]]:
  """A callable uint8 [B, H, W, 3] -> outputs for a file of format `fmt`."""
  if fmt == ONNX:
    return OnnxDetector(path)
  if fmt in (TFLITE, TFLITE_INT8):
    return TfliteDetector(path)
  signature = tf.saved_model.load(path).signatures[export.SERVING_DEFAULT]
  return lambda images: {k: v.numpy() for k, v in signature(
      images=tf.constant(images, tf.uint8)).items()}


def compare_detections(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
                       box_tolerance: float = BOX_TOLERANCE) -> List[str]:
  """Differences between two output dicts of the same images; [] when they agree.

  Agreement: the same valid_detections per image and, for each reference
  detection, an unused candidate detection of the same class whose box is
  within box_tolerance x the image's longer side on every coordinate (order
  may differ among near-equal scores).
  """
  problems = []
  valid_ref = np.asarray(reference["valid_detections"])
  valid_new = np.asarray(candidate["valid_detections"])
  for i, (n_ref, n_new) in enumerate(zip(valid_ref, valid_new)):
    if n_ref != n_new:
      problems.append(f"image {i}: {n_new} detections, reference {n_ref}")
      continue
    tolerance = box_tolerance * float(np.max(reference["image_size"][i]))
    ref_boxes = np.asarray(reference["boxes"][i, :n_ref], np.float64)
    new_boxes = np.asarray(candidate["boxes"][i, :n_new], np.float64)
    ref_classes = np.asarray(reference["class_ids"][i, :n_ref])
    new_classes = np.asarray(candidate["class_ids"][i, :n_new])
    unused = np.ones(n_new, bool)
    for j in range(n_ref):
      error = np.abs(new_boxes - ref_boxes[j]).max(axis=1)
      match = np.flatnonzero(unused & (new_classes == ref_classes[j]) & (error <= tolerance))
      if not match.size:
        problems.append(f"image {i}: reference detection {j} (class {ref_classes[j]}, box "
                        f"{np.round(ref_boxes[j], 2).tolist()}) has no match")
        continue
      unused[match[np.argmin(error[match])]] = False
  return problems


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model_dir", required=True,
                      help="trained model directory: Model artifact, export or pushed version")
  parser.add_argument("--format", required=True, choices=FORMATS)
  parser.add_argument("--output", required=True, help="output file (a directory for tftrt_fp16)")
  parser.add_argument("--postprocess", default="{}",
                      help='JSON of PostprocessConfig overrides, e.g. {"nms_mode": "global_hard"}')
  parser.add_argument("--trt_workspace_mib", type=int, default=1024)
  parser.add_argument("--trt_build_batch_sizes", default="1,8",
                      help="comma-separated batch sizes whose TensorRT engines are built ahead")
  console.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  try:
    overrides = json.loads(args.postprocess)
    batches = [int(b) for b in args.trt_build_batch_sizes.split(",") if b.strip()]
    options = TftrtOptions(max_workspace_bytes=args.trt_workspace_mib << 20,
                           build_batch_sizes=tuple(batches))
    path = export_format(args.model_dir, args.format, args.output, overrides, options)
  except (ExportError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"{args.format} -> {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
