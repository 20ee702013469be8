"""The exported SavedModel against the in-process model + evaluation postprocess.

One tiny random-weight RetinaNet (ResNet-18, 16 channels, levels 3..5,
64x96 input) is trained-dir-exported once per module (`export_model_dir`,
the Pusher's path) and shared by the tests. References come from the
evaluation code path: `preprocess_ops` (as EvalParser) +
`evaluate_model.build_detect_fn` + `boxes_to_original_image`.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from PIL import Image

from retinanet import coco
from retinanet import config as config_lib
from retinanet import factory
from retinanet import layout
from retinanet.dataloader import preprocess_ops
from retinanet.evaluation import evaluate_model
from retinanet.ops import orientation
from retinanet.serving import export
from retinanet.serving import inference
from retinanet.serving import versioning
from retinanet.training import checkpointing
from tests import exif_images

LABEL_MAP = coco.LabelMap((3, 8, 21), ("cat", "dog", "kite"))
INPUT_SIZE = (64, 96)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**postprocess) -> config_lib.ExperimentConfig:
  """A small model with scores spread enough to give detections at threshold 0.05."""
  return config_lib.config_from_dict({
      "model": {
          "num_classes": LABEL_MAP.num_classes, "input_size": list(INPUT_SIZE),
          "backbone": {"depth": 18}, "fpn": {"min_level": 3, "max_level": 5, "num_channels": 16},
          "head": {"num_convs": 1, "num_channels": 16, "prior_probability": 0.2},
      },
      "postprocess": {"max_detections": 20, "pre_nms_top_k": 200, **postprocess},
  })


def tiny_model(config: config_lib.ExperimentConfig) -> tf_keras.Model:
  """factory.build_model with every weight redrawn from a seeded numpy generator.

  He-normal kernels, identity batch norms, zero biases; the prediction
  layers are then scaled so that on a sample image each class logit has mean
  -1 and std 1.5 and each box delta std 0.3: scores spread over (0, 1)
  without saturating (saturated scores tie at 1.0 and make top-k ambiguous).
  """
  model = factory.build_model(config.model)
  rng = np.random.RandomState(0)
  for var in model.variables:
    name = var.name.split("/")[-1]
    if len(var.shape) == 4:
      fan_in = int(np.prod(var.shape[:3]))
      value = rng.normal(0.0, np.sqrt(2.0 / fan_in), var.shape)
    elif name.startswith(("gamma", "moving_variance")):
      value = np.ones(var.shape)
    else:
      value = np.zeros(var.shape)
    var.assign(value.astype(np.float32))
  sample = tf.constant(random_image(INPUT_SIZE[0], INPUT_SIZE[1], seed=99)[None], tf.float32)
  outputs = model((sample - 128.0) / 64.0, training=False)
  for head, key, std in ((model.class_head, "class_outputs", 1.5),
                         (model.box_head, "box_outputs", 0.3)):
    scale = std / np.std(outputs[key].numpy(), axis=(0, 1))  # per output column
    head.prediction.kernel.assign(
        head.prediction.kernel * np.tile(scale, config.model.num_anchors_per_location))
  # Class logits centred at -1 per class: every class gets detections.
  logits = model((sample - 128.0) / 64.0, training=False)["class_outputs"].numpy()
  model.class_head.prediction.bias.assign(np.tile(
      -1.0 - logits.mean(axis=(0, 1)), config.model.num_anchors_per_location).astype(np.float32))
  return model


def random_image(height: int, width: int, seed: int) -> np.ndarray:
  """A smooth random uint8 RGB image (blobs, so detections vary across the image)."""
  rng = np.random.RandomState(seed)
  small = rng.randint(0, 256, (max(height // 16, 2), max(width // 16, 2), 3)).astype(np.uint8)
  return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def reference_detections(model, config, images):
  """Evaluation-path detections of each image, boxes mapped to its original pixels.

  Returns a list of dicts (boxes [v, 4] original pixels, model_boxes [v, 4]
  model-input pixels, scores [v], classes [v], scale [2]).
  """
  # Run eagerly: tracing the reference would cost more than the tiny computation.
  detect = evaluate_model.build_detect_fn(model, config.model, config.postprocess).python_function
  results = []
  for image in images:
    size = tf.shape(image)[:2]
    geometry = preprocess_ops.resize_crop_geometry(size, INPUT_SIZE)
    pixels = preprocess_ops.resize_and_crop_image(tf.constant(image), geometry)
    pixels = preprocess_ops.pad_image(
        preprocess_ops.normalize_image(pixels, config.input.mean_rgb, config.input.stddev_rgb),
        INPUT_SIZE)
    covered = tf.cast(size, tf.float32) * geometry.image_scale
    det = {k: v.numpy() for k, v in detect(pixels[None], covered[None]).items()}
    valid = int(det["valid_detections"][0])
    original = preprocess_ops.boxes_to_original_image(det["boxes"], geometry.image_scale[None],
                                                      size[None]).numpy()
    results.append({"boxes": original[0, :valid], "model_boxes": det["boxes"][0, :valid],
                    "scores": det["scores"][0, :valid], "classes": det["classes"][0, :valid],
                    "scale": geometry.image_scale.numpy()})
  return results


def assert_same_detections(boxes, scores, classes, reference):
  """Same detections up to float noise, in any order among (near-)equal scores.

  Anchors in the zero-padded part of the input see identical features, so
  their scores tie exactly and the reference (eager) and the SavedModel may
  order them differently: each reference detection must find its own match.
  """
  boxes, scores, classes = np.asarray(boxes), np.asarray(scores), np.asarray(classes)
  assert len(scores) == len(reference["scores"]) > 0
  np.testing.assert_allclose(scores, reference["scores"], atol=1e-5)  # both sorted
  unmatched = list(range(len(scores)))
  for j in range(len(reference["scores"])):
    found = [k for k in unmatched
             if classes[k] == reference["classes"][j]
             and abs(scores[k] - reference["scores"][j]) <= 1e-5
             and np.abs(boxes[k] - reference["boxes"][j]).max() <= 1e-3]
    assert found, (f"reference detection {j} (class {reference['classes'][j]}, score "
                   f"{reference['scores'][j]}, box {reference['boxes'][j]}) is missing")
    unmatched.remove(found[0])


def assert_positive_areas(outputs, index):
  """No returned detection is an empty box (one in the padding of the resized input)."""
  boxes = outputs["boxes"][index, :int(outputs["valid_detections"][index])]
  assert len(boxes) and np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])


def assert_matches(outputs, index, reference):
  valid = int(outputs["valid_detections"][index])
  assert_same_detections(outputs["boxes"][index, :valid], outputs["scores"][index, :valid],
                         outputs["class_ids"][index, :valid], reference)


def write_model_dir(model_dir: str, config, model) -> str:
  """A trained-model directory (checkpoint 7, config.json, label_map.json) of `model`."""
  manager = tf.train.CheckpointManager(checkpointing.make_checkpoint(model=model),
                                       os.path.join(model_dir, layout.CHECKPOINT_DIR), 2)
  manager.save(checkpoint_number=7)
  config_lib.save_config(config, os.path.join(model_dir, layout.CONFIG_FILE))
  coco.save_label_map(LABEL_MAP, os.path.join(model_dir, layout.LABEL_MAP_FILE))
  return model_dir


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """(config, in-process model, loaded SavedModel, export_dir, model_dir)."""
  root = tmp_path_factory.mktemp("serving")
  config = tiny_config(max_detections=100)
  model = tiny_model(config)
  model_dir = write_model_dir(str(root / "trained"), config, model)
  export_dir = str(root / "export")
  # The Pusher's path; the override brings max_detections back to 20.
  export.export_model_dir(model_dir, export_dir, postprocess_overrides={"max_detections": 20})
  config = tiny_config()
  return config, model, tf.saved_model.load(export_dir), export_dir, model_dir


def run(loaded, name, **inputs):
  return {k: v.numpy() for k, v in loaded.signatures[name](**inputs).items()}


def test_signatures_inputs_and_outputs(exported):
  _, _, loaded, _, _ = exported
  assert set(loaded.signatures) == set(export.SIGNATURE_NAMES)
  expected_inputs = {
      "serving_default": {"images": tf.uint8},
      "serve_images": {"images": tf.uint8},
      "serve_images_with_id": {"images": tf.uint8, "image_id": tf.int64},
      "serve_encoded": {"encoded_images": tf.string},
      "serve_encoded_with_id": {"encoded_images": tf.string, "image_id": tf.int64},
  }
  output_dtypes = {"boxes": tf.float32, "scores": tf.float32, "class_ids": tf.int32,
                   "category_ids": tf.int64, "valid_detections": tf.int32, "image_id": tf.int64,
                   "image_size": tf.int32}
  for name, inputs in expected_inputs.items():
    fn = loaded.signatures[name]
    _, kwargs = fn.structured_input_signature
    assert {k: v.dtype for k, v in kwargs.items()} == inputs, name
    assert {k: v.dtype for k, v in fn.structured_outputs.items()} == output_dtypes, name
    assert fn.structured_outputs["boxes"].shape.as_list() == [None, 20, 4]


def test_serve_images_matches_in_process_model_in_original_pixels(exported):
  config, model, loaded, _, _ = exported
  images = np.stack([random_image(100, 200, seed=1), random_image(100, 200, seed=2)])
  outputs = run(loaded, "serve_images", images=tf.constant(images))
  reference = reference_detections(model, config, list(images))
  for i in range(2):
    assert_matches(outputs, i, reference[i])
    # By hand: a 100x200 image in a 64x96 input is scaled by min(64/100, 96/200) = 0.48.
    np.testing.assert_allclose(reference[i]["scale"], [0.48, 0.48], rtol=1e-6)
    by_hand = np.clip(reference[i]["model_boxes"] / 0.48, 0.0, [100, 200, 100, 200])
    valid = len(by_hand)
    assert_same_detections(outputs["boxes"][i, :valid], outputs["scores"][i, :valid],
                           outputs["class_ids"][i, :valid], dict(reference[i], boxes=by_hand))
  np.testing.assert_array_equal(outputs["image_size"], [[100, 200], [100, 200]])
  np.testing.assert_array_equal(outputs["image_id"], [0, 1])
  assert outputs["boxes"][:, :, 2].max() > 64  # beyond the model input: original pixels


def test_serving_default_is_serve_images(exported):
  _, _, loaded, _, _ = exported
  images = tf.constant(random_image(70, 50, seed=3)[None])
  a, b = run(loaded, "serving_default", images=images), run(loaded, "serve_images", images=images)
  for key in export.OUTPUT_KEYS:
    np.testing.assert_array_equal(a[key], b[key])


def test_serve_encoded_handles_mixed_sizes_and_passes_image_ids(exported):
  config, model, loaded, _, _ = exported
  images = [random_image(100, 200, seed=4), random_image(64, 64, seed=5),
            random_image(150, 90, seed=6)]
  encoded = [tf.io.encode_png(im).numpy() for im in images]  # lossless
  outputs = run(loaded, "serve_encoded_with_id", encoded_images=tf.constant(encoded),
                image_id=tf.constant([501, 7, 2**40], tf.int64))
  np.testing.assert_array_equal(outputs["image_id"], [501, 7, 2**40])
  np.testing.assert_array_equal(outputs["image_size"], [[100, 200], [64, 64], [150, 90]])
  for i, ref in enumerate(reference_detections(model, config, images)):
    assert_matches(outputs, i, ref)
  default_ids = run(loaded, "serve_encoded", encoded_images=tf.constant(encoded))
  np.testing.assert_array_equal(default_ids["image_id"], [0, 1, 2])
  np.testing.assert_array_equal(default_ids["boxes"], outputs["boxes"])
  same = run(loaded, "serve_images_with_id", images=tf.constant(images[0][None]),
             image_id=tf.constant([9], tf.int64))
  assert same["image_id"].tolist() == [9]
  # Two preprocessing paths (encoded vs uint8) agree to float32 rounding of pixel boxes.
  np.testing.assert_allclose(same["boxes"][0], outputs["boxes"][0], atol=1e-3)


def test_serve_encoded_detects_on_the_displayed_image_for_every_exif_orientation(exported):
  """A JPEG tagged with each EXIF orientation: detections and image_size are those of the
  image a viewer shows (PIL's exif_transpose of the stored pixels)."""
  config, model, loaded, _, _ = exported
  stored = random_image(40, 60, seed=21)
  encoded = [exif_images.jpeg(stored, value) for value in orientation.ORIENTATIONS]
  pixels = tf.io.decode_jpeg(encoded[0]).numpy()  # the tag does not change the stored pixels
  displayed = [exif_images.displayed_by_pil(pixels, value) for value in orientation.ORIENTATIONS]
  outputs = run(loaded, "serve_encoded_with_id", encoded_images=tf.constant(encoded),
                image_id=tf.range(8, dtype=tf.int64))
  np.testing.assert_array_equal(outputs["image_size"], [d.shape[:2] for d in displayed])
  assert outputs["image_size"].tolist()[:5:4] == [[40, 60], [60, 40]]
  for i, ref in enumerate(reference_detections(model, config, displayed)):
    assert_matches(outputs, i, ref)


def test_sensor_order_export_and_turning_its_outputs(exported, tmp_path):
  """postprocess.apply_exif_orientation=false keeps the stored order in the graph; clients
  (the inference CLI, the Evaluator) turn its outputs with export.outputs_in_displayed_frame."""
  config, model, _, export_dir, _ = exported
  sensor = config_lib.apply_overrides(config, ["postprocess.apply_exif_orientation=false"])
  module = export.build_detection_module(
      model, model_config=sensor.model, input_config=sensor.input,
      postprocess_config=sensor.postprocess, label_map=LABEL_MAP)
  data = exif_images.jpeg(random_image(40, 60, seed=22), 6)
  raw = {k: v.numpy() for k, v in module.serve_encoded(tf.constant([data])).items()}
  np.testing.assert_array_equal(raw["image_size"], [[40, 60]])  # stored, not turned
  # By hand: 90 degrees clockwise of a 6x10 image, (y, x) -> (x, 6 - y); padding stays 0.
  outputs = {"boxes": np.float32([[[1, 2, 4, 7], [0, 0, 0, 0]]]), "image_size": np.int32([[6, 10]]),
             "valid_detections": np.int32([1]), "scores": np.float32([[0.9, 0.0]])}
  turned = export.outputs_in_displayed_frame(outputs, [data])
  np.testing.assert_array_equal(turned["boxes"], [[[2, 2, 7, 5], [0, 0, 0, 0]]])
  np.testing.assert_array_equal(turned["image_size"], [[10, 6]])
  assert turned["scores"] is outputs["scores"]
  # Which exports turn: the setting in config.json; absent (older exports) means they did not.
  assert export.applies_exif_orientation(export_dir)
  old = tmp_path / "old"
  old.mkdir()
  assert not export.applies_exif_orientation(str(old))
  (old / layout.CONFIG_FILE).write_text(json.dumps({"postprocess": {"nms_mode": "combined"}}))
  assert not export.applies_exif_orientation(str(old))


def test_category_ids_map_class_ids_and_padding_is_marked(exported):
  _, _, loaded, _, _ = exported
  images = np.stack([random_image(80, 120, seed=s) for s in (7, 8)])
  outputs = run(loaded, "serve_images", images=tf.constant(images))
  ids = np.array(LABEL_MAP.category_ids)
  seen = set()
  for i in range(2):
    valid = outputs["valid_detections"][i]
    classes = outputs["class_ids"][i, :valid]
    np.testing.assert_array_equal(outputs["category_ids"][i, :valid], ids[classes])
    seen.update(classes.tolist())
    assert np.all(outputs["class_ids"][i, valid:] == -1)
    assert np.all(outputs["category_ids"][i, valid:] == -1)
    assert np.all(outputs["boxes"][i, valid:] == 0) and np.all(outputs["scores"][i, valid:] == 0)
    assert np.all(np.diff(outputs["scores"][i, :valid]) <= 0)
  assert len(seen) >= 2  # the mapping is exercised for more than one class


def test_export_dir_has_label_map_config_and_restorable_checkpoint(exported):
  config, model, _, export_dir, _ = exported
  assert export.load_label_map(export_dir) == LABEL_MAP
  saved = config_lib.load_config(os.path.join(export_dir, layout.CONFIG_FILE))
  assert saved.model == config.model and saved.input == config.input
  assert saved.postprocess.max_detections == 20  # the override is recorded
  ckpt_dir = os.path.join(export_dir, layout.CHECKPOINT_DIR)
  assert os.path.basename(tf.train.latest_checkpoint(ckpt_dir)) == "ckpt-7"
  restored = factory.build_model(config.model)
  checkpointing.restore_model(restored, ckpt_dir)
  for a, b in zip(restored.variables, model.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_export_saved_model_writes_sections_config_and_refuses_overwrite(exported, tmp_path):
  config, model, _, export_dir, _ = exported
  with pytest.raises(FileExistsError, match="already holds a SavedModel"):
    export.export_saved_model(model, model_config=config.model, input_config=config.input,
                              postprocess_config=config.postprocess, label_map=LABEL_MAP,
                              export_dir=export_dir)
  wrong = coco.LabelMap((1, 2), ("a", "b"))
  with pytest.raises(ValueError, match="label map has 2 classes but model.num_classes=3"):
    export.export_saved_model(model, model_config=config.model, input_config=config.input,
                              postprocess_config=config.postprocess, label_map=wrong,
                              export_dir=str(tmp_path / "x"))
  sections = export.serving_config_dict(config.model, config.input, config.postprocess)
  assert config_lib.config_from_dict(json.loads(json.dumps(sections))).model == config.model


def test_postprocess_overrides_parse_strings_and_reject_unknown_keys():
  config = tiny_config()
  new = export.apply_postprocess_overrides(
      config, {"nms_mode": "global_soft", "iou_threshold": "0.6", "max_detections": 7})
  assert (new.postprocess.nms_mode, new.postprocess.iou_threshold) == ("global_soft", 0.6)
  assert new.postprocess.max_detections == 7 and new.model == config.model
  assert config.postprocess.nms_mode == "combined"  # the input is not modified
  with pytest.raises(config_lib.ConfigError, match="nms_modee"):
    export.apply_postprocess_overrides(config, {"nms_modee": "combined"})
  with pytest.raises(config_lib.ConfigError, match="nms_mode"):
    export.apply_postprocess_overrides(config, {"nms_mode": "fast"})


def test_pushed_model_in_a_fresh_process_via_the_cli(exported, tmp_path):
  """`python -m retinanet.serving.inference` on a pushed base dir: JSON + PNGs match."""
  config, model, _, export_dir, _ = exported
  base = str(tmp_path / "serving")
  versioning.push_directory(export_dir, base, version=3)
  image_dir = tmp_path / "images"
  image_dir.mkdir()
  images = {"wide.png": random_image(100, 200, seed=10), "tall.png": random_image(150, 90, seed=11),
            "small.jpg": random_image(48, 40, seed=12)}
  for name, image in images.items():
    Image.fromarray(image).save(image_dir / name, quality=95)
  # A phone photo: stored 40 high x 70 wide, displayed turned 90 degrees clockwise.
  (image_dir / "turned.jpg").write_bytes(exif_images.jpeg(random_image(40, 70, seed=13), 6))
  # The JPEGs as TensorFlow decodes them, turned as displayed, are the reference inputs.
  decoded = {n: exif_images.displayed_by_pil(
      tf.io.decode_image((image_dir / n).read_bytes(), channels=3).numpy(),
      6 if n == "turned.jpg" else 1) for n in [*images, "turned.jpg"]}
  assert decoded["turned.jpg"].shape == (70, 40, 3)
  out_dir = tmp_path / "out"
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
  result = subprocess.run(
      [sys.executable, "-m", "retinanet.serving.inference", "--model_dir", base,
       "--image_dir", str(image_dir), "--output_dir", str(out_dir), "--batch_size", "2",
       "--score_threshold", "0"],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "images/s" in result.stderr
  report = json.loads((out_dir / "detections.json").read_text())
  assert report["model_dir"] == os.path.join(base, "3")
  names = sorted(decoded)
  assert [r["file"] for r in report["images"]] == names
  references = reference_detections(model, config, [decoded[n] for n in names])
  for record, ref, name in zip(report["images"], references, names):
    height, width = decoded[name].shape[:2]
    assert (record["height"], record["width"]) == (height, width)
    with Image.open(out_dir / (os.path.splitext(name)[0] + ".png")) as png:
      assert png.size == (width, height)
    dets = record["detections"]
    assert_same_detections([d["box_yxyx"] for d in dets], [d["score"] for d in dets],
                           [d["class_id"] for d in dets], ref)
    for d in dets:
      assert d["class_name"] == LABEL_MAP.names[d["class_id"]]
      assert d["category_id"] == LABEL_MAP.category_ids[d["class_id"]]
      ymin, xmin, ymax, xmax = d["box_yxyx"]
      assert d["box_xywh"] == pytest.approx([xmin, ymin, xmax - xmin, ymax - ymin])


def test_inference_skips_a_corrupt_image_walks_subfolders_and_keeps_every_good_one(
    exported, tmp_path, capsys):
  """A real folder: a truncated JPEG among good images, one of them in a subfolder. Every good
  image is in detections.json (as if each ran alone), the bad one is named and counted."""
  config, model, _, export_dir, _ = exported
  image_dir = tmp_path / "images"
  (image_dir / "sub").mkdir(parents=True)
  good = {"a.png": random_image(60, 80, seed=20), "sub/b.jpg": random_image(50, 70, seed=21),
          "c.png": random_image(40, 40, seed=22)}
  for name, image in good.items():
    Image.fromarray(image).save(image_dir / name, quality=95)
  full = (image_dir / "sub" / "b.jpg").read_bytes()
  (image_dir / "broken.jpg").write_bytes(full[:len(full) // 3])     # a truncated download
  out_dir = tmp_path / "out"
  code = inference.main(["--model_dir", export_dir, "--image_dir", str(image_dir),
                         "--output_dir", str(out_dir), "--batch_size", "4",
                         "--score_threshold", "0", "--recursive"])
  assert code == 0
  printed = capsys.readouterr()
  assert "3 images" in printed.out and "1 skipped (undecodable): broken.jpg" in printed.out
  assert f"Skipped {image_dir / 'broken.jpg'}" in printed.err
  report = json.loads((out_dir / "detections.json").read_text())
  assert [r["file"] for r in report["images"]] == sorted(good)
  assert [s["file"] for s in report["skipped"]] == ["broken.jpg"]
  decoded = {n: tf.io.decode_image((image_dir / n).read_bytes(), channels=3).numpy()
             for n in sorted(good)}
  references = reference_detections(model, config, [decoded[n] for n in sorted(good)])
  for record, ref in zip(report["images"], references):
    dets = record["detections"]
    assert_same_detections([d["box_yxyx"] for d in dets], [d["score"] for d in dets],
                           [d["class_id"] for d in dets], ref)
  assert (out_dir / "sub" / "b.png").exists() and not (out_dir / "broken.png").exists()
  # Without --recursive the subfolder is not read.
  flat = inference.run_inference(export_dir, str(image_dir), str(tmp_path / "flat"),
                                 score_threshold=0.0, draw=False)
  assert [r["file"] for r in flat["images"]] == ["a.png", "c.png"]


def test_warmup_file_parses_as_tf_serving_prediction_logs_that_the_model_answers(exported):
  """assets.extra/tf_serving_warmup_requests: PredictionLog records TF Serving replays at
  load; each request runs on the SavedModel's signature as Serving would call it."""
  from tensorflow_serving.apis import prediction_log_pb2  # pylint: disable=g-import-not-at-top
  _, _, loaded, export_dir, _ = exported
  path = os.path.join(export_dir, export.WARMUP_FILE)
  logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(path)]
  seen = []
  for log in logs:
    request = log.predict_log.request
    inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
    batch = len(next(iter(inputs.values())))
    seen.append((request.model_spec.signature_name, batch))
    if "images" in inputs:  # the model's input size: the first real call needs no retrace
      assert inputs["images"].shape[1:] == (*INPUT_SIZE, 3) and inputs["images"].dtype == np.uint8
    out = loaded.signatures[request.model_spec.signature_name](
        **{k: tf.constant(v) for k, v in inputs.items()})
    assert out["boxes"].shape[0] == batch
  assert sorted(seen) == sorted((name, b) for name in export.WARMUP_SIGNATURES
                                for b in (1, export.WARMUP_BATCH))
