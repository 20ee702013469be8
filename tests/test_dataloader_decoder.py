"""Decoder tests, plus the tiny TFRecord fixtures the other dataloader tests import."""
import os
from typing import Optional, Sequence

import numpy as np
import pytest
import tensorflow as tf

from retinanet.dataloader import schema
from retinanet.dataloader import decoder


def encode_image(array: np.ndarray, fmt: str = "png") -> bytes:
  """uint8 [H, W, C] -> JPEG or PNG bytes."""
  tensor = tf.constant(array, tf.uint8)
  if fmt == "jpeg":
    return tf.io.encode_jpeg(tensor, quality=95).numpy()
  return tf.io.encode_png(tensor).numpy()


def make_example(image: np.ndarray, boxes_yxyx_normalized: Sequence[Sequence[float]] = (),
                 classes: Sequence[int] = (), is_crowd: Optional[Sequence[int]] = None,
                 image_id: int = 1, fmt: str = "png",
                 areas: Optional[Sequence[float]] = None) -> tf.train.Example:
  """An Example with the retinanet/dataloader/schema.py keys, boxes given as normalized yxyx."""
  boxes = np.asarray(boxes_yxyx_normalized, np.float32).reshape(-1, 4)
  is_crowd = [0] * len(boxes) if is_crowd is None else list(is_crowd)
  floats = lambda v: tf.train.Feature(float_list=tf.train.FloatList(value=list(v)))
  ints = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=list(v)))
  raw = lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))
  feature = {
      schema.ENCODED: raw(encode_image(image, fmt)),
      schema.FORMAT: raw(fmt.encode()),
      schema.HEIGHT: ints([image.shape[0]]),
      schema.WIDTH: ints([image.shape[1]]),
      schema.IMAGE_ID: ints([image_id]),
      schema.FILENAME: raw(f"{image_id}.{fmt}".encode()),
      schema.YMIN: floats(boxes[:, 0]),
      schema.XMIN: floats(boxes[:, 1]),
      schema.YMAX: floats(boxes[:, 2]),
      schema.XMAX: floats(boxes[:, 3]),
      schema.LABEL: ints(classes),
      schema.CATEGORY_ID: ints([c + 1 for c in classes]),
      schema.AREA: floats([1.0] * len(boxes) if areas is None else areas),
      schema.IS_CROWD: ints(is_crowd),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature))


def write_tfrecord(path: str, examples: Sequence[tf.train.Example]) -> str:
  """Writes examples to a GZIP TFRecord file (like the data stage) and returns the path."""
  with tf.io.TFRecordWriter(path, options=tf.io.TFRecordOptions(compression_type="GZIP")) as w:
    for example in examples:
      w.write(example.SerializeToString())
  return path


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_dataset(directory: str, num_files: int, per_file: int, height: int = 64,
                  width: int = 96, fmt: str = "jpeg") -> list:
  """num_files GZIP shards of per_file images (ids 1..N), each with two boxes."""
  paths = []
  image_id = 1
  for f in range(num_files):
    examples = []
    for _ in range(per_file):
      boxes = [[0.1, 0.1, 0.6, 0.5], [0.3, 0.4, 0.9, 0.95]]
      examples.append(make_example(random_image(height, width, image_id), boxes, [image_id % 3, 1],
                                   image_id=image_id, fmt=fmt))
      image_id += 1
    name = f"data_tfrecord-{f:05d}-of-{num_files:05d}.gz"
    paths.append(write_tfrecord(os.path.join(directory, name), examples))
  return paths


def _decode(example: tf.train.Example) -> dict:
  return {k: v.numpy() for k, v in
          decoder.decode_example(tf.constant(example.SerializeToString())).items()}


def test_png_decodes_exactly_with_boxes_as_yxyx():
  image = random_image(20, 30)
  out = _decode(make_example(image, [[0.1, 0.2, 0.5, 0.9]], [7], is_crowd=[1], image_id=42,
                             areas=[55.5]))
  np.testing.assert_array_equal(out[decoder.IMAGE], image)
  assert out[decoder.IMAGE_ID] == 42
  np.testing.assert_array_equal(out[decoder.ORIGINAL_SIZE], [20, 30])
  np.testing.assert_allclose(out[decoder.BOXES], [[0.1, 0.2, 0.5, 0.9]])
  np.testing.assert_array_equal(out[decoder.CLASSES], [7])
  assert out[decoder.CLASSES].dtype == np.int32
  np.testing.assert_array_equal(out[decoder.IS_CROWD], [True])
  np.testing.assert_allclose(out[decoder.AREAS], [55.5])


def test_jpeg_decodes_close_to_the_source():
  image = np.full((16, 24, 3), (200, 100, 50), np.uint8)
  out = _decode(make_example(image, fmt="jpeg"))
  assert out[decoder.IMAGE].shape == (16, 24, 3)
  assert np.abs(out[decoder.IMAGE].astype(int) - image).max() <= 3


def test_stored_corners_are_reordered_to_yxyx():
  example = make_example(random_image(8, 8), [[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]], [0, 1])
  # make_example stores ymin=0.1, xmin=0.2, ymax=0.3, xmax=0.4 under their own keys.
  assert list(example.features.feature[schema.XMIN].float_list.value) == pytest.approx([0.2, 0.6])
  out = _decode(example)
  np.testing.assert_allclose(out[decoder.BOXES], [[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]])


def test_grey_and_rgba_png_become_rgb():
  grey = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
  out = _decode(make_example(grey))
  assert out[decoder.IMAGE].shape == (3, 4, 3)
  for c in range(3):
    np.testing.assert_array_equal(out[decoder.IMAGE][..., c], grey[..., 0])
  rgba = np.concatenate([random_image(3, 4), np.full((3, 4, 1), 7, np.uint8)], axis=-1)
  out = _decode(make_example(rgba))
  np.testing.assert_array_equal(out[decoder.IMAGE], rgba[..., :3])


def test_image_without_objects_gives_empty_lists():
  out = _decode(make_example(random_image(5, 5)))
  assert out[decoder.BOXES].shape == (0, 4)
  assert out[decoder.CLASSES].shape == (0,)
  assert out[decoder.IS_CROWD].shape == (0,)


def test_object_lists_of_different_length_name_the_field():
  example = make_example(random_image(5, 5), [[0.1, 0.1, 0.5, 0.5]], [1], image_id=31337)
  example.features.feature[schema.LABEL].int64_list.value.append(2)
  with pytest.raises(tf.errors.InvalidArgumentError, match=schema.LABEL) as error:
    _decode(example)
  assert "31337" in str(error.value)


def test_wrong_stored_size_names_the_fields():
  example = make_example(random_image(5, 6), image_id=4242)
  example.features.feature[schema.HEIGHT].int64_list.value[0] = 99
  with pytest.raises(tf.errors.InvalidArgumentError, match="image/height") as error:
    _decode(example)
  assert "4242" in str(error.value)


def test_gzip_fixture_reads_back(tmp_path):
  paths = write_dataset(str(tmp_path), num_files=2, per_file=3)
  ids = [decoder.decode_example(r)[decoder.IMAGE_ID].numpy()
         for r in tf.data.TFRecordDataset(paths, compression_type="GZIP")]
  assert ids == [1, 2, 3, 4, 5, 6]


def test_decodes_an_example_written_by_the_data_stage():
  from data import example_codec
  from retinanet import coco
  label_map = coco.LabelMap(category_ids=(3, 9), names=("cat", "dog"))
  image = random_image(40, 50)
  annotations = [{"category_id": 9, "bbox": [5.0, 10.0, 20.0, 8.0], "iscrowd": 0, "area": 150.0},
                 {"category_id": 3, "bbox": [0.0, 0.0, 50.0, 40.0], "iscrowd": 1, "area": 2000.0}]
  example, _ = example_codec.build_example(
      encode_image(image, "png"), {"id": 123, "file_name": "a.png"}, annotations, label_map)
  out = _decode(example)
  np.testing.assert_array_equal(out[decoder.IMAGE], image)
  assert out[decoder.IMAGE_ID] == 123
  # COCO [x, y, w, h] = [5, 10, 20, 8] -> yxyx pixels [10, 5, 18, 25] in a 40 x 50 image.
  np.testing.assert_allclose(out[decoder.BOXES] * [40, 50, 40, 50],
                             [[10.0, 5.0, 18.0, 25.0], [0.0, 0.0, 40.0, 50.0]], atol=1e-4)
  np.testing.assert_array_equal(out[decoder.CLASSES], [1, 0])
  np.testing.assert_array_equal(out[decoder.IS_CROWD], [False, True])
  np.testing.assert_allclose(out[decoder.AREAS], [150.0, 2000.0])


def test_orientation_turns_the_pixels_and_the_size_check_is_after_the_turn():
  from tests import exif_images
  image = random_image(5, 8)
  old = make_example(image, image_id=77)  # written before image/orientation existed
  assert schema.ORIENTATION not in old.features.feature
  np.testing.assert_array_equal(_decode(old)[decoder.IMAGE], image)  # orientation 1
  turned = make_example(image, image_id=77)
  turned.features.feature[schema.ORIENTATION].int64_list.value.append(6)
  with pytest.raises(tf.errors.InvalidArgumentError, match=schema.ORIENTATION) as error:
    _decode(turned)  # the stored size is the displayed size: 8 high, 5 wide
  assert "77" in str(error.value)
  turned.features.feature[schema.HEIGHT].int64_list.value[0] = 8
  turned.features.feature[schema.WIDTH].int64_list.value[0] = 5
  out = _decode(turned)
  np.testing.assert_array_equal(out[decoder.IMAGE], exif_images.displayed_by_pil(image, 6))
  np.testing.assert_array_equal(out[decoder.ORIGINAL_SIZE], [8, 5])
  assert schema.parse_example(old.SerializeToString())[schema.ORIENTATION] == 1
