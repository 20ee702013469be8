"""data/example_codec.py: Example round trip, header reading, box rules."""
import io
import math

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data import example_codec as codec
from data.image_options import ImageOptions
from retinanet.coco import LabelMap
from retinanet.dataloader import schema
from tests import exif_images

LABEL_MAP = LabelMap.from_categories([{"id": 12, "name": "triangle"}, {"id": 3, "name": "circle"}])


def _image_bytes(fmt, height=10, width=20, seed=0):
  pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format=fmt)
  return buffer.getvalue()


def _ann(bbox, category_id=3, **extra):
  return {"id": 1, "category_id": category_id, "bbox": bbox, **extra}


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_round_trip_every_field_and_original_bytes(tmp_path, fmt):
  path = tmp_path / "img.bin"
  path.write_bytes(_image_bytes(fmt, height=10, width=20))
  file_bytes = path.read_bytes()
  image = {"id": 42, "file_name": "sub/img.bin"}
  anns = [_ann([2, 1, 4, 5], 3, area=17.5), _ann([10, 0, 10, 10], 12, iscrowd=1)]
  example, report = codec.build_example(file_bytes, image, anns, LABEL_MAP)
  serialized = example.SerializeToString()
  parsed = schema.parse_example(serialized)

  assert parsed[schema.ENCODED] == file_bytes
  assert parsed[schema.FORMAT] == fmt.lower()
  assert (parsed[schema.HEIGHT], parsed[schema.WIDTH]) == (10, 20)
  assert parsed[schema.IMAGE_ID] == 42
  assert parsed[schema.FILENAME] == "sub/img.bin"
  np.testing.assert_array_equal(parsed[schema.XMIN], np.float32([2 / 20, 10 / 20]))
  np.testing.assert_array_equal(parsed[schema.YMIN], np.float32([1 / 10, 0]))
  np.testing.assert_array_equal(parsed[schema.XMAX], np.float32([6 / 20, 1.0]))
  np.testing.assert_array_equal(parsed[schema.YMAX], np.float32([6 / 10, 1.0]))
  np.testing.assert_array_equal(parsed[schema.LABEL], [0, 1])
  np.testing.assert_array_equal(parsed[schema.CATEGORY_ID], [3, 12])
  np.testing.assert_array_equal(parsed[schema.AREA], np.float32([17.5, 100.0]))
  np.testing.assert_array_equal(parsed[schema.IS_CROWD], [0, 1])
  assert (report.boxes_written, report.boxes_clipped, report.crowd_boxes) == (2, 0, 1)

  # The training pipeline parses with FEATURE_SPEC: same values.
  tf_parsed = tf.io.parse_single_example(serialized, schema.FEATURE_SPEC)
  assert set(tf_parsed) == set(schema.FEATURE_SPEC) == set(parsed)
  for key, value in tf_parsed.items():
    if isinstance(value, tf.sparse.SparseTensor):
      value = tf.sparse.to_dense(value)
    value = value.numpy()
    expected = parsed[key].encode() if isinstance(parsed[key], str) else parsed[key]
    np.testing.assert_array_equal(value, expected, err_msg=key)
  decoded = tf.io.decode_image(tf_parsed[schema.ENCODED]).numpy()
  assert decoded.shape == (10, 20, 3)


def test_format_comes_from_magic_bytes_not_extension():
  jpeg = _image_bytes("JPEG")
  example, _ = codec.build_example(jpeg, {"id": 1, "file_name": "looks_like.png"}, [], LABEL_MAP)
  assert schema.parse_example(example.SerializeToString())[schema.FORMAT] == "jpeg"
  assert codec.detect_format(_image_bytes("PNG")) == "png"
  assert codec.detect_format(_image_bytes("GIF")) == "gif"
  assert codec.detect_format(_image_bytes("BMP")) == "bmp"
  assert codec.detect_format(b"hello world") is None


def test_header_size_matches_decoded_size_for_odd_shapes():
  for fmt in ("JPEG", "PNG"):
    data = _image_bytes(fmt, height=37, width=11)
    assert codec.read_image_header(data) == (fmt.lower(), 37, 11)


@pytest.mark.parametrize("data, reason", [
    (b"\x00" * 100, codec.CORRUPT_IMAGE),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 100, codec.CORRUPT_IMAGE),      # JPEG magic, junk header
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, codec.CORRUPT_IMAGE),      # PNG magic, junk header
])
def test_corrupt_headers_are_skipped(data, reason):
  with pytest.raises(codec.ImageSkipped) as e:
    codec.read_image_header(data, "x.jpg")
  assert e.value.reason == reason
  assert "x.jpg" in str(e.value)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_corrupt(fmt):
  data = _image_bytes(fmt, height=64, width=64)
  with pytest.raises(codec.ImageSkipped, match="truncated") as e:
    codec.read_image_header(data[:len(data) * 2 // 3])
  assert e.value.reason == codec.CORRUPT_IMAGE
  # The same truncation makes TensorFlow's decoder fail during training.
  with pytest.raises(tf.errors.InvalidArgumentError):
    tf.io.decode_image(data[:len(data) * 2 // 3]).numpy()


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "WEBP", "TIFF"])
def test_other_formats_are_skipped_not_reencoded(fmt):
  with pytest.raises(codec.ImageSkipped, match="--convert_unsupported_images") as e:
    codec.build_example(_image_bytes(fmt), {"id": 1, "file_name": "a"}, [], LABEL_MAP)
  assert e.value.reason == codec.UNSUPPORTED_FORMAT


@pytest.mark.parametrize("fmt", ["WEBP", "TIFF", "BMP", "GIF"])
def test_other_formats_are_converted_to_png_on_request(fmt):
  pixels = np.random.default_rng(1).integers(0, 255, (10, 20, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
  example, report = codec.build_example(
      buffer.getvalue(), {"id": 1, "file_name": "a", "height": 10, "width": 20},
      [_ann([2, 1, 4, 5])], LABEL_MAP, options=ImageOptions(convert_unsupported=True))
  parsed = schema.parse_example(example.SerializeToString())
  assert (parsed[schema.FORMAT], report.converted_from) == ("png", fmt.lower())
  assert (parsed[schema.HEIGHT], parsed[schema.WIDTH], parsed[schema.ORIENTATION]) == (10, 20, 1)
  decoded = tf.io.decode_png(parsed[schema.ENCODED]).numpy()
  with Image.open(buffer) as original:
    np.testing.assert_array_equal(decoded, np.asarray(original.convert("RGB")))
  if fmt in ("WEBP", "TIFF", "BMP"):  # lossless: the pixels written
    np.testing.assert_array_equal(decoded, pixels)
  assert report.boxes_written == 1


def test_converted_tiff_is_turned_by_its_exif_orientation():
  stored = exif_images.marked_image(10, 20, (1, 2, 4, 9))
  exif = Image.Exif()
  exif[exif_images.ORIENTATION_TAG] = 6
  buffer = io.BytesIO()
  Image.fromarray(stored).save(buffer, format="TIFF", exif=exif.tobytes())
  example, report = codec.build_example(buffer.getvalue(), {"id": 1, "file_name": "t.tif"}, [],
                                        LABEL_MAP, options=ImageOptions(convert_unsupported=True))
  parsed = schema.parse_example(example.SerializeToString())
  decoded = tf.io.decode_png(parsed[schema.ENCODED]).numpy()
  np.testing.assert_array_equal(decoded, exif_images.displayed_by_pil(stored, 6))
  # Stored already turned (image/orientation 1); the file's orientation is reported.
  assert (parsed[schema.HEIGHT], parsed[schema.WIDTH], parsed[schema.ORIENTATION]) == (20, 10, 1)
  assert (report.orientation, report.converted_from) == (6, "tiff")
  # Labelled with the TIFF's stored size and boxed on its stored pixels: with "rescale" the
  # box turns with the pixels onto the block of the PNG.
  example, report = codec.build_example(
      buffer.getvalue(), {"id": 1, "file_name": "t.tif", "height": 10, "width": 20},
      [_ann([2, 1, 7, 3])], LABEL_MAP,
      options=ImageOptions(size_mismatch="rescale", convert_unsupported=True))
  parsed = schema.parse_example(example.SerializeToString())
  assert report.size_fix == codec.REORIENTED
  box = [parsed[k][0] * s for k, s in ((schema.YMIN, 20), (schema.XMIN, 10), (schema.YMAX, 20),
                                       (schema.XMAX, 10))]
  np.testing.assert_allclose(box, exif_images.bright_box_yxyx(decoded), atol=1e-5)


def test_exif_orientation_stored_with_the_displayed_size_and_the_original_bytes():
  # Stored 10 high x 20 wide, orientation 6: displayed 20 high x 10 wide, as the JSON says.
  data = exif_images.jpeg(exif_images.marked_image(10, 20, (0, 0, 2, 2)), 6)
  image = {"id": 5, "file_name": "turned.jpg", "height": 20, "width": 10}
  example, report = codec.build_example(data, image, [_ann([1, 2, 4, 5])], LABEL_MAP)
  parsed = schema.parse_example(example.SerializeToString())
  assert parsed[schema.ENCODED] == data
  assert (parsed[schema.HEIGHT], parsed[schema.WIDTH], parsed[schema.ORIENTATION]) == (20, 10, 6)
  # The box, in displayed pixels, is normalized by the displayed size.
  np.testing.assert_allclose([parsed[k][0] for k in (schema.XMIN, schema.YMIN, schema.XMAX,
                                                     schema.YMAX)], [0.1, 0.1, 0.5, 0.35],
                             rtol=1e-6)
  assert (report.orientation, report.size_fix) == (6, "")
  with pytest.raises(codec.ImageSkipped, match=r"turned.jpg: the JSON says 20x10 \(width x height\) but the image is "
                     r"10x20 as displayed \(stored 20x10, EXIF orientation 6\)") as e:
    codec.build_example(data, {**image, "height": 10, "width": 20}, [], LABEL_MAP)
  assert e.value.reason == codec.SIZE_MISMATCH


def test_fit_annotations_by_hand():
  anns = [_ann([100, 50, 200, 100], area=15000.0), _ann([0, 0, 10, 10])]
  labelled = {"id": 1, "file_name": "wrongsize.jpg", "height": 480, "width": 640}
  # Stored and displayed 240 high x 320 wide, labelled 480 x 640: boxes halved.
  fitted, fix = codec.fit_annotations(anns, labelled, (240, 320), 1, "rescale")
  assert fix == codec.RESCALED
  assert fitted[0]["bbox"] == [50, 25, 100, 50] and fitted[0]["area"] == 3750.0
  assert fitted[1]["bbox"] == [0, 0, 5, 5] and "area" not in fitted[1]
  assert anns[0]["bbox"] == [100, 50, 200, 100]  # the input is not modified
  for policy in ("skip", "error"):
    with pytest.raises(codec.ImageSkipped, match="wrongsize.jpg: the JSON says 640x480") as e:
      codec.fit_annotations(anns, labelled, (240, 320), 1, policy)
    assert e.value.reason == codec.SIZE_MISMATCH
  # Stored 300 high x 400 wide with orientation 6, labelled with the stored size: the
  # annotator saw the stored pixels; the box turns 90 degrees clockwise with them
  # (stored (y, x) -> displayed (x, 300 - y)).
  stored_frame = {"id": 2, "file_name": "s.jpg", "height": 300, "width": 400}
  fitted, fix = codec.fit_annotations([_ann([10, 20, 30, 40])], stored_frame, (300, 400), 6,
                                      "rescale")
  assert fix == codec.REORIENTED
  np.testing.assert_allclose(fitted[0]["bbox"], [240, 10, 40, 30])
  # No size in the JSON, or the displayed size: nothing to fit.
  for image in ({"id": 3, "file_name": "n"}, {**stored_frame, "height": 400, "width": 300}):
    assert codec.fit_annotations(anns, image, (300, 400), 6, "error") == (anns, "")
  with pytest.raises(ValueError, match="size_mismatch='fit' is not one of skip, rescale, error"):
    ImageOptions(size_mismatch="fit")


def test_clip_box_hand_computed():
  # Image 10 high, 20 wide.
  assert codec.clip_box_xywh([2, 3, 4, 5], 10, 20) == ((2, 3, 6, 8), False)
  assert codec.clip_box_xywh([-2, 3, 6, 20], 10, 20) == ((0, 3, 4, 10), True)
  assert codec.clip_box_xywh([15, -1, 10, 4], 10, 20) == ((15, 0, 20, 3), True)
  assert codec.clip_box_xywh([0, 0, 20, 10], 10, 20) == ((0, 0, 20, 10), False)


@pytest.mark.parametrize("bbox", [
    [5, 5, 0, 3],            # zero width
    [5, 5, 3, -1],           # negative height
    [25, 2, 5, 5],           # entirely right of the image
    [-8, 2, 5, 5],           # entirely left of the image
    [3, 10, 4, 4],           # starts on the bottom edge: zero height after clipping
    [1, 1, math.nan, 3],     # non-finite
    [1, 1, math.inf, 3],
])
def test_degenerate_boxes_are_dropped(bbox):
  assert codec.clip_box_xywh(bbox, 10, 20) is None
  rows, report = codec.build_objects([_ann(bbox), _ann([1, 1, 2, 2])], 10, 20, LABEL_MAP)
  assert report.boxes_written == 1
  assert report.dropped == {codec.DEGENERATE_BOX: 1}
  assert rows.xmin == [1 / 20]


def test_partly_outside_box_is_clipped_and_counted():
  rows, report = codec.build_objects([_ann([-2, 3, 6, 20])], 10, 20, LABEL_MAP)
  assert report.boxes_clipped == 1
  assert (rows.xmin, rows.ymin, rows.xmax, rows.ymax) == ([0.0], [0.3], [0.2], [1.0])
  assert rows.area == [4 * 7]  # No COCO area: the clipped box's area.


def test_unknown_category_is_dropped_and_crowd_kept():
  anns = [_ann([1, 1, 2, 2], 99), _ann([1, 1, 4, 4], 12, iscrowd=1), _ann([0, 0, 1, 1], 3)]
  rows, report = codec.build_objects(anns, 10, 20, LABEL_MAP)
  assert report.dropped == {codec.UNKNOWN_CATEGORY: 1}
  assert rows.category_id == [12, 3]
  assert rows.label == [1, 0]
  assert rows.is_crowd == [1, 0]
  assert report.crowd_boxes == 1
  assert report.labels == [1, 0]


def test_image_without_annotations_is_a_valid_negative():
  data = _image_bytes("PNG")
  example, report = codec.build_example(data, {"id": 7, "file_name": "n.png"}, [], LABEL_MAP)
  serialized = example.SerializeToString()
  parsed = schema.parse_example(serialized)
  assert report.boxes_written == 0
  for key in (schema.XMIN, schema.LABEL, schema.IS_CROWD, schema.AREA):
    assert parsed[key].shape == (0,)
  tf_parsed = tf.io.parse_single_example(serialized, schema.FEATURE_SPEC)
  assert tf.sparse.to_dense(tf_parsed[schema.XMIN]).shape == (0,)


def test_parse_example_names_a_missing_feature():
  example, _ = codec.build_example(_image_bytes("PNG"), {"id": 7, "file_name": "n"}, [],
                                   LABEL_MAP)
  del example.features.feature[schema.IS_CROWD]
  with pytest.raises(ValueError, match="image/object/is_crowd"):
    schema.parse_example(example.SerializeToString())
