"""Every NMS mode's SavedModel against the evaluation path; ONNX and TFLite exports
against the SavedModel on the same images; TF-TRT arguments.

One tiny random-weight model directory (tests/test_serving_export.py) per
module. For each post-processing, one SavedModel is exported from it by
`export.export_model_dir` (the Pusher's path) and checked against the in-process
evaluation path; every format is written from the same directory by
`portable.export_format` (the Pusher's and the CLI's path) and compared with that
SavedModel. Each conversion costs 5-15 s on the 2 shared cores, an export and its
load about 3 s: the module writes each (format, post-processing) file and each
SavedModel once (`converted`, `saved_models`) and its tests only read them.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from retinanet import config as config_lib
from retinanet.serving import export, portable
from tests.test_serving_export import (LABEL_MAP, assert_matches, assert_positive_areas,
                                       random_image, reference_detections, tiny_config,
                                       tiny_model, write_model_dir)

MAX_PER_CLASS = 6
POSTPROCESS = {"iou_threshold": 0.4, "soft_nms_sigma": 0.3,
               "max_detections_per_class": MAX_PER_CLASS}


@pytest.fixture(scope="module")
def model():
  return tiny_model(tiny_config())


@pytest.fixture(scope="module")
def model_dir(model, tmp_path_factory):
  return write_model_dir(str(tmp_path_factory.mktemp("portable") / "trained"), tiny_config(),
                         model)


def image_batches():
  """Two batches: two 100x200 images (wider than the 64x96 input), one 90x60 image."""
  return [np.stack([random_image(100, 200, seed=30), random_image(100, 200, seed=31)]),
          random_image(90, 60, seed=32)[None]]


def _once_per_key(build):
  """fn(*key) -> build(*key), computed once per key (the key's JSON)."""
  built = {}

  def get(*key):
    name = json.dumps(key, sort_keys=True)
    if name not in built:
      built[name] = build(*key)
    return built[name]

  return get


@pytest.fixture(scope="module")
def saved_models(model_dir, tmp_path_factory):
  """fn(overrides) -> a SavedModel exported from model_dir with those post-processing
  overrides (once per overrides)."""
  def export_dir(overrides):
    path = str(tmp_path_factory.mktemp("saved_model") / "export")
    return export.export_model_dir(model_dir, path, postprocess_overrides=overrides)

  return _once_per_key(export_dir)


@pytest.fixture(scope="module")
def references(saved_models):
  """fn(overrides) -> the outputs of saved_models(overrides) on image_batches()."""
  def outputs(overrides):
    serve = portable.load_detector("saved_model", saved_models(overrides))
    return [serve(images) for images in image_batches()]

  return _once_per_key(outputs)


@pytest.fixture(scope="module")
def converted(model_dir, tmp_path_factory):
  """fn(fmt, overrides) -> the path `portable.export_format` wrote (once per key)."""
  def path(fmt, overrides):
    output = tmp_path_factory.mktemp(fmt) / portable.FILENAMES[fmt]
    return portable.export_format(model_dir, fmt, str(output), overrides)

  return _once_per_key(path)


def assert_agrees(fmt, converted, references, nms_mode):
  overrides = dict(POSTPROCESS, nms_mode=nms_mode)
  detector = portable.load_detector(fmt, converted(fmt, overrides))
  for images, reference in zip(image_batches(), references(overrides)):
    outputs = detector(images)
    assert set(outputs) == set(export.OUTPUT_KEYS)
    for i in range(len(images)):
      assert_positive_areas(outputs, i)
    assert reference["valid_detections"].min() > 0
    assert portable.compare_detections(reference, outputs) == []
    np.testing.assert_array_equal(outputs["category_ids"], reference["category_ids"])
    np.testing.assert_array_equal(outputs["image_size"], reference["image_size"])
    n = reference["valid_detections"]
    for i in range(len(n)):
      # TFLite's float kernels round differently from TensorFlow's; soft-NMS rescoring
      # carries it: 1.007e-5 measured on an AVX-512 CPU (2026-12-03), hence 3e-5.
      np.testing.assert_allclose(np.sort(outputs["scores"][i, :n[i]]),
                                 np.sort(reference["scores"][i, :n[i]]), atol=3e-5)


@pytest.mark.parametrize("nms_mode", config_lib.NMS_MODES)
def test_exported_nms_mode_matches_in_process_postprocess(model, saved_models, nms_mode):
  """The SavedModel of each NMS mode serves the evaluation path's detections (PNG bytes in)."""
  overrides = dict(POSTPROCESS, nms_mode=nms_mode)
  config = tiny_config(**overrides)
  loaded = tf.saved_model.load(saved_models(overrides))
  images = [random_image(100, 200, seed=20), random_image(90, 60, seed=21)]
  encoded = tf.constant([tf.io.encode_png(im).numpy() for im in images])
  outputs = {k: v.numpy()
             for k, v in loaded.signatures["serve_encoded"](encoded_images=encoded).items()}
  for i, ref in enumerate(reference_detections(model, config, images)):
    assert_matches(outputs, i, ref)
    assert_positive_areas(outputs, i)
    classes = outputs["class_ids"][i, :outputs["valid_detections"][i]]
    if nms_mode in ("combined", "per_class_hard", "per_class_soft"):
      assert np.bincount(classes, minlength=LABEL_MAP.num_classes).max() <= MAX_PER_CLASS


@pytest.mark.parametrize("nms_mode", portable.ONNX_NMS_MODES)
def test_onnx_matches_saved_model(converted, references, nms_mode):
  assert_agrees(portable.ONNX, converted, references, nms_mode)


@pytest.mark.parametrize("nms_mode", ["per_class_soft", "global_soft"])
def test_onnx_soft_nms_fails_with_a_clear_error(model_dir, tmp_path, nms_mode):
  output = str(tmp_path / "model.onnx")
  with pytest.raises(portable.ExportError, match=r"soft-NMS.*combined, per_class_hard, global_hard"):
    portable.export_format(model_dir, portable.ONNX, output, {"nms_mode": nms_mode})
  assert not os.path.exists(output)
  code = portable.main(["--model_dir", model_dir, "--format", "onnx", "--output", output,
                        "--postprocess", f'{{"nms_mode": "{nms_mode}"}}'])
  assert code == 2 and not os.path.exists(output)


@pytest.mark.parametrize("nms_mode", ["combined", "per_class_soft", "global_soft"])
def test_tflite_float32_matches_saved_model(converted, references, nms_mode):
  assert_agrees(portable.TFLITE, converted, references, nms_mode)


def test_tflite_int8_is_smaller_and_finds_the_float_models_top_detections(converted,
                                                                          references):
  """Dynamic-range int8 moves scores and boxes a little: at least 80% of the SavedModel's 5
  best detections per image have an int8 detection of their class with IoU >= 0.7
  (measured on this random-weight model: 14 of 15)."""
  overrides = dict(POSTPROCESS, nms_mode="combined")
  int8 = converted(portable.TFLITE_INT8, overrides)
  assert os.path.getsize(int8) < 0.4 * os.path.getsize(converted(portable.TFLITE, overrides))
  detector = portable.load_detector(portable.TFLITE_INT8, int8)
  top5 = lambda out: dict(out, valid_detections=np.minimum(out["valid_detections"], 5))
  recalls = [portable.detection_recall(top5(reference), detector(images), iou=0.7)
             for images, reference in zip(image_batches(), references(overrides))]
  assert np.mean(recalls) >= 0.8, recalls


def test_detection_recall_hand_case():
  reference = {"boxes": np.array([[[0, 0, 10, 10], [20, 20, 40, 40], [0, 0, 5, 5]]], np.float32),
               "class_ids": np.array([[0, 1, 2]]), "valid_detections": np.array([3])}
  # Box 0 shifted by 1 px (IoU 81/119 = 0.68), box 1 exact but of another class, box 2 absent.
  candidate = {"boxes": np.array([[[1, 1, 11, 11], [20, 20, 40, 40]]], np.float32),
               "class_ids": np.array([[0, 2]]), "valid_detections": np.array([2])}
  assert portable.detection_recall(reference, candidate, iou=0.5) == pytest.approx(1 / 3)
  assert portable.detection_recall(reference, candidate, iou=0.7) == 0.0
  assert portable.detection_recall(dict(reference, valid_detections=np.array([0])),
                                   candidate) == 1.0


def test_compare_detections_hand_cases():
  boxes = np.array([[[0, 0, 10, 10], [5, 5, 20, 30], [0, 0, 0, 0]]], np.float32)
  reference = {"boxes": boxes, "class_ids": np.array([[1, 2, -1]]),
               "valid_detections": np.array([2]), "image_size": np.array([[100, 200]])}
  assert portable.compare_detections(reference, reference) == []
  swapped = dict(reference, boxes=boxes[:, [1, 0, 2]], class_ids=np.array([[2, 1, -1]]))
  assert portable.compare_detections(reference, swapped) == []
  # 0.19 px is within 1e-3 x 200; 0.21 px is not.
  assert portable.compare_detections(reference, dict(reference, boxes=boxes + 0.19)) == []
  assert "has no match" in portable.compare_detections(reference, dict(reference,
                                                                       boxes=boxes + 0.21))[0]
  assert "has no match" in portable.compare_detections(
      reference, dict(reference, class_ids=np.array([[1, 1, -1]])))[0]
  assert portable.compare_detections(reference, dict(reference, valid_detections=np.array([1]))
                                     ) == ["image 0: 1 detections, reference 2"]


@pytest.mark.parametrize("kwargs, message", [
    ({"precision": "INT8"}, "calibration"),
    ({"max_workspace_bytes": 1000}, "below 1 MiB"),
    ({"build_batch_sizes": (0, 8)}, "must be >= 1"),
    ({"build_batch_sizes": ()}, "must be >= 1"),
])
def test_tftrt_options_are_validated(kwargs, message):
  with pytest.raises(portable.ExportError, match=message):
    portable.TftrtOptions(**kwargs)


def test_tftrt_cli_arguments_reach_the_converter(model_dir, tmp_path, monkeypatch):
  calls = {}

  def fake_tftrt(saved_model_dir, output_dir, input_size, options):
    calls.update(saved_model_dir=saved_model_dir, output_dir=output_dir,
                 input_size=list(input_size), options=options)
    return output_dir

  monkeypatch.setattr(portable, "export_tftrt", fake_tftrt)
  output = str(tmp_path / "trt")
  assert portable.main(["--model_dir", model_dir, "--format", "tftrt_fp16", "--output", output,
                        "--trt_workspace_mib", "512", "--trt_build_batch_sizes", "1,4,16"]) == 0
  assert calls["options"] == portable.TftrtOptions(max_workspace_bytes=512 << 20,
                                                   build_batch_sizes=(1, 4, 16))
  assert calls["output_dir"] == output and calls["input_size"] == list(tiny_config().model.input_size)
  # The SavedModel it converts was exported beside the output, with the model's settings.
  assert tf.io.gfile.exists(os.path.join(calls["saved_model_dir"], "saved_model.pb"))
  assert portable.main(["--model_dir", model_dir, "--format", "tftrt_fp16", "--output", output,
                        "--trt_build_batch_sizes", "0"]) == 2


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="a GPU is present")
def test_tftrt_without_a_gpu_says_so(model_dir, tmp_path):
  with pytest.raises(portable.ExportError, match="needs an NVIDIA GPU"):
    portable.export_tftrt(model_dir, str(tmp_path / "trt"), (64, 96))
