"""Conversion of rotated photos and mislabelled sizes, through the training decoder.

One generated train split: `exif1.jpg` .. `exif8.jpg`, displayed 400 high x 300 wide
(so `exif6.jpg` is stored 400x300 (width x height) with orientation 6 and the JSON says
300x400), each with a bright block and its box in displayed pixels; `wrongsize.jpg`
labelled 640x480 but stored at 320x240; `sensor.jpg`, orientation 6, labelled with its
stored size and boxed in stored pixels; `photo.webp`. Each size_mismatch policy converts
it once; the records are read back with the decoder that training and evaluation use.
"""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data import convert
from retinanet.dataloader import decoder
from retinanet.dataloader import schema
from retinanet.ops import box_ops
from tests import exif_images

IN_MEMORY = ["--direct_running_mode=in_memory"]
DISPLAYED = (400, 300)        # (height, width) of the exifN.jpg images as displayed
BLOCK = (40, 60, 200, 150)    # their block, displayed pixels yxyx
WRONG_STORED = (240, 320)     # wrongsize.jpg as stored (height, width)
WRONG_BLOCK = (30, 40, 100, 200)


def _xywh(yxyx):
  ymin, xmin, ymax, xmax = yxyx
  return [xmin, ymin, xmax - xmin, ymax - ymin]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp("exif")
  images, annotations = [], []

  def add(name, data, box_xywh, **size):
    image_id = len(images) + 1
    (root / name).write_bytes(data)
    images.append({"id": image_id, "file_name": name, **size})
    annotations.append({"id": 100 + image_id, "image_id": image_id, "category_id": 7,
                        "bbox": box_xywh, "area": box_xywh[2] * box_xywh[3], "iscrowd": 0})

  displayed = exif_images.marked_image(*DISPLAYED, BLOCK)
  for value in range(1, 9):
    add(f"exif{value}.jpg", exif_images.jpeg(exif_images.stored_pixels(displayed, value), value),
        _xywh(BLOCK), height=DISPLAYED[0], width=DISPLAYED[1])
  wrong = exif_images.marked_image(*WRONG_STORED, WRONG_BLOCK)
  add("wrongsize.jpg", exif_images.jpeg(wrong, 1), [2 * v for v in _xywh(WRONG_BLOCK)],
      height=480, width=640)
  sensor = exif_images.marked_image(300, 400, (10, 20, 50, 100))  # stored pixels
  add("sensor.jpg", exif_images.jpeg(sensor, 6), _xywh((10, 20, 50, 100)), height=300, width=400)
  webp = root / "photo.webp"
  Image.fromarray(exif_images.marked_image(60, 80, (10, 10, 30, 50))).save(webp, lossless=True)
  add("photo.webp", webp.read_bytes(), _xywh((10, 10, 30, 50)), height=60, width=80)
  path = root / "instances_train.json"
  path.write_text(json.dumps({"images": images, "annotations": annotations,
                              "categories": [{"id": 7, "name": "block"}]}))
  return {"train": (str(path), str(root))}


def _decoded(split_dir):
  """{file name: (displayed image, pixel boxes yxyx)} through decoder.decode_example."""
  out = {}
  for path in sorted(glob.glob(os.path.join(split_dir, "*.gz"))):
    for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
      name = schema.parse_example(record.numpy())[schema.FILENAME]
      d = decoder.decode_example(record)
      boxes = box_ops.denormalize_boxes_yxyx(d[decoder.BOXES], d[decoder.ORIGINAL_SIZE])
      out[name] = (d[decoder.IMAGE].numpy(), boxes.numpy())
  return out


def _assert_box_on_block(image, box, name):
  """The box holds the bright block's pixels (within a pixel: JPEG blurs the edge)."""
  np.testing.assert_allclose(box, exif_images.bright_box_yxyx(image), atol=1.0, err_msg=name)


def _check_reconciles(s):
  assert s["images_in"] == s["images_written"] + sum(s["images_skipped"].values())
  assert s["annotations_in"] == s["boxes_written"] + sum(s["annotations_dropped"].values())
  m = s["size_mismatch"]
  assert s["image_size_mismatch"] == m["skipped"] + m["rescaled"] + m["reoriented"]


@pytest.fixture(scope="module")
def skipped(dataset, tmp_path_factory):
  """The default policy (skip), through Beam as the pipeline runs it."""
  out = str(tmp_path_factory.mktemp("skip"))
  return convert.convert_coco(dataset, out, num_shards=2, beam_pipeline_args=IN_MEMORY)


def test_every_orientation_keeps_its_box_on_the_block(dataset, skipped):
  s = skipped.stats["splits"]["train"]
  decoded = _decoded(skipped.split_dirs["train"])
  assert sorted(decoded) == [f"exif{v}.jpg" for v in range(1, 9)]
  for name, (image, boxes) in decoded.items():
    assert image.shape == (*DISPLAYED, 3), name
    np.testing.assert_allclose(boxes, [BLOCK], atol=1e-3, err_msg=name)
    _assert_box_on_block(image, boxes[0], name)
  # Original bytes, the orientation and the displayed size stored; 7 of 8 are turned.
  for path in glob.glob(os.path.join(skipped.split_dirs["train"], "*.gz")):
    for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
      e = schema.parse_example(record.numpy())
      assert e[schema.ENCODED] == open(os.path.join(dataset["train"][1], e[schema.FILENAME]),
                                       "rb").read()
      assert e[schema.ORIENTATION] == int(e[schema.FILENAME][4])
      assert (e[schema.HEIGHT], e[schema.WIDTH]) == DISPLAYED
  assert s["oriented_images"] == 7
  truth = json.load(open(convert.ground_truth_path(skipped.output_dir, "train")))
  assert {(im["height"], im["width"]) for im in truth["images"]} == {DISPLAYED}
  assert {tuple(a["bbox"]) for a in truth["annotations"]} == {tuple(_xywh(BLOCK))}


def test_skip_names_the_mismatched_files_and_counts_reconcile(skipped):
  s = skipped.stats["splits"]["train"]
  assert (s["images_in"], s["images_written"]) == (11, 8)
  assert {k: v for k, v in s["images_skipped"].items() if v} == {
      "size_mismatch": 2, "unsupported_format": 1}
  assert s["annotations_dropped"]["image_skipped"] == 3
  assert s["image_size_mismatch"] == 2
  assert s["size_mismatch"] == {"policy": "skip", "skipped": 2, "rescaled": 0, "reoriented": 0,
                                "files": ["sensor.jpg", "wrongsize.jpg"]}
  assert s["images_converted"] == {}
  _check_reconciles(s)


def test_rescale_fits_the_boxes_and_converts_on_request(dataset, tmp_path):
  result = convert.convert_coco(dataset, str(tmp_path / "out"), num_shards=1, in_process=True,
                                size_mismatch="rescale", convert_unsupported_images=True)
  s = result.stats["splits"]["train"]
  assert (s["images_written"], sum(s["images_skipped"].values())) == (11, 0)
  assert s["size_mismatch"] == {"policy": "rescale", "skipped": 0, "rescaled": 1,
                                "reoriented": 1, "files": ["sensor.jpg", "wrongsize.jpg"]}
  assert (s["images_converted"], s["oriented_images"]) == ({"webp": 1}, 8)
  _check_reconciles(s)
  decoded = _decoded(result.split_dirs["train"])
  # wrongsize.jpg: boxes labelled at 640x480 halved onto the 320x240 pixels.
  image, boxes = decoded["wrongsize.jpg"]
  assert image.shape[:2] == WRONG_STORED
  np.testing.assert_allclose(boxes, [WRONG_BLOCK], atol=1e-3)
  # sensor.jpg: boxed on the stored pixels, turned with them (300x400 stored -> 400x300).
  image, boxes = decoded["sensor.jpg"]
  assert image.shape[:2] == (400, 300)
  np.testing.assert_allclose(boxes, [[20, 250, 100, 290]], atol=1e-3)
  for name in ("wrongsize.jpg", "sensor.jpg", "photo.webp"):
    image, boxes = decoded[name]
    _assert_box_on_block(image, boxes[0], name)
  # The evaluation ground truth holds the same fitted boxes.
  truth = json.load(open(convert.ground_truth_path(result.output_dir, "train")))
  names = {im["id"]: im["file_name"] for im in truth["images"]}
  fitted = {names[a["image_id"]]: a for a in truth["annotations"]}
  assert fitted["wrongsize.jpg"]["bbox"] == _xywh(WRONG_BLOCK)
  assert fitted["wrongsize.jpg"]["area"] == 70 * 160
  np.testing.assert_allclose(fitted["sensor.jpg"]["bbox"], [250, 20, 40, 80], atol=1e-4)


def test_error_stops_naming_the_files_after_counting_them(dataset, tmp_path):
  out = tmp_path / "out"
  with pytest.raises(convert.SizeMismatchError,
                     match=r"train: 2 image\(s\), e.g. sensor.jpg, wrongsize.jpg"):
    convert.convert_coco(dataset, str(out), num_shards=1, in_process=True, size_mismatch="error")
  s = json.load(open(out / "conversion_report.json"))["splits"]["train"]
  assert s["size_mismatch"]["skipped"] == s["images_skipped"]["size_mismatch"] == 2
  _check_reconciles(s)
  with pytest.raises(ValueError, match="size_mismatch='resize' is not one of"):
    convert.convert_coco(dataset, str(tmp_path / "bad"), size_mismatch="resize")
