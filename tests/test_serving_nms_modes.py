"""Every NMS mode exports, loads and matches the evaluation path (see test_serving_export).

Each mode costs one export + load: 10-30 s on the 2 shared cores.
"""
import numpy as np
import pytest
import tensorflow as tf

from retinanet import config as config_lib
from retinanet.serving import export
from tests.test_serving_export import (LABEL_MAP, assert_matches, assert_positive_areas,
                                       random_image, reference_detections, tiny_config,
                                       tiny_model)

MAX_PER_CLASS = 6


@pytest.fixture(scope="module")
def model():
  return tiny_model(tiny_config())


@pytest.mark.parametrize("nms_mode", config_lib.NMS_MODES)
def test_exported_nms_mode_matches_in_process_postprocess(model, nms_mode, tmp_path):
  config = tiny_config(nms_mode=nms_mode, iou_threshold=0.4, soft_nms_sigma=0.3,
                       max_detections_per_class=MAX_PER_CLASS)
  export_dir = export.export_saved_model(
      model, model_config=config.model, input_config=config.input,
      postprocess_config=config.postprocess, label_map=LABEL_MAP,
      export_dir=str(tmp_path / nms_mode))
  loaded = tf.saved_model.load(export_dir)
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
