"""Drawing detections and the inference CLI's model-free helpers."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from retinanet import coco
from retinanet.serving import inference
from retinanet.serving import visualize


def test_class_colors_are_deterministic_and_distinct():
  colors = [visualize.class_color(i) for i in range(80)]
  assert colors == [visualize.class_color(i) for i in range(80)]
  # Consecutive classes must be easy to tell apart.
  for a, b in zip(colors, colors[1:]):
    assert sum(abs(x - y) for x, y in zip(a, b)) > 60, (a, b)
  assert len(set(colors)) == 80
  assert all(0 <= c <= 255 for color in colors for c in color)


def test_draw_detections_keeps_size_and_draws_the_box_outline():
  image = np.full((60, 90, 3), 255, np.uint8)
  box = [30.0, 20.0, 55.0, 70.0]  # ymin, xmin, ymax, xmax
  drawn = visualize.draw_detections(image, np.array([box]), [3], ["dog"], [0.87], line_width=1)
  assert drawn.size == (90, 60)  # PIL: (width, height)
  pixels = np.asarray(drawn)
  color = visualize.class_color(3)
  # Left and right edges at x = xmin / xmax, bottom edge at y = ymax.
  assert tuple(pixels[45, 20]) == color
  assert tuple(pixels[45, 70]) == color
  assert tuple(pixels[55, 45]) == color
  # Inside the box and far outside it nothing changed; the input is untouched.
  assert tuple(pixels[45, 45]) == (255, 255, 255)
  assert tuple(pixels[5, 85]) == (255, 255, 255)
  assert image.min() == 255
  # The caption is a filled label of the class colour just above the box.
  assert tuple(pixels[29, 21]) == color or tuple(pixels[28, 21]) == color


def test_draw_detections_without_detections_returns_a_copy():
  image = Image.new("L", (17, 9), color=100)
  drawn = visualize.draw_detections(image, np.zeros([0, 4]), [], [], [])
  assert drawn.mode == "RGB" and drawn.size == (17, 9)
  assert np.all(np.asarray(drawn) == 100)


def test_draw_detections_rejects_mismatched_lengths():
  with pytest.raises(ValueError, match="2 boxes, 1 class ids"):
    visualize.draw_detections(np.zeros((8, 8, 3), np.uint8), np.zeros([2, 4]), [0], ["a"], [0.5])


def test_output_png_names_are_unique():
  names = ["a.jpg", "b.png", "a.png", "c.JPEG"]
  assert inference.output_png_names(names) == ["a_jpg.png", "b.png", "a_png.png", "c.png"]


def test_list_images_filters_and_sorts(tmp_path):
  for name in ["b.png", "a.JPG", "notes.txt", "c.jpeg"]:
    (tmp_path / name).write_bytes(b"x")
  assert inference.list_images(str(tmp_path)) == ["a.JPG", "b.png", "c.jpeg"]
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match="no images"):
    inference.list_images(str(empty))


def test_resolve_saved_model_dir_picks_the_highest_version(tmp_path):
  for version in ["9", "10", "tmp-11"]:
    (tmp_path / version).mkdir()
    (tmp_path / version / "saved_model.pb").write_bytes(b"")
  (tmp_path / "12").mkdir()  # no saved_model.pb: an unfinished push
  assert inference.resolve_saved_model_dir(str(tmp_path)) == os.path.join(str(tmp_path), "10")
  assert inference.resolve_saved_model_dir(str(tmp_path / "9")) == str(tmp_path / "9")
  with pytest.raises(FileNotFoundError, match="no numeric version"):
    inference.resolve_saved_model_dir(str(tmp_path / "12"))


def test_image_detections_converts_filters_and_names():
  label_map = coco.LabelMap((1, 7, 42), ("cat", "dog", "kite"))
  outputs = {
      "valid_detections": np.array([3, 0]),
      "boxes": np.array([[[10, 20, 30, 60], [0, 0, 5, 5], [1, 2, 3, 4], [0, 0, 0, 0]],
                         np.zeros([4, 4])], np.float32),
      "scores": np.array([[0.9, 0.2, 0.5, 0.0], [0, 0, 0, 0]], np.float32),
      "class_ids": np.array([[2, 0, 1, -1], [-1] * 4]),
      "category_ids": np.array([[42, 1, 7, -1], [-1] * 4]),
  }
  result = inference.image_detections(outputs, 0, label_map, score_threshold=0.3)
  assert [d["class_name"] for d in result] == ["kite", "dog"]
  assert result[0]["box_yxyx"] == [10, 20, 30, 60]
  assert result[0]["box_xywh"] == [20, 10, 40, 20]
  assert [d["category_id"] for d in result] == [42, 7]
  assert result[1]["score"] == pytest.approx(0.5)
  json.dumps(result)  # JSON-ready: plain Python numbers only
  assert inference.image_detections(outputs, 1, label_map, score_threshold=0.0) == []


DEJAVU = visualize.FONT_FILES[0]


@pytest.mark.skipif(not os.path.exists(DEJAVU), reason="fonts-dejavu-core is not installed")
def test_accented_and_cyrillic_labels_get_real_glyphs():
  for label in ("café sign", "кошка", "Ölçü"):
    font, text = visualize.caption_font(label)
    assert text == label and font.path == DEJAVU
  # The accent is drawn: "café" and "cafe" differ in pixels.
  draw = lambda label: np.asarray(visualize.draw_detections(
      np.zeros((40, 120, 3), np.uint8), np.array([[20, 2, 38, 100.]]), [0], [label], [0.9]))
  assert not np.array_equal(draw("café"), draw("cafe"))


def test_a_glyph_no_font_has_becomes_a_question_mark():
  font, text = visualize.caption_font("sign \ue000 0.90")  # a private-use code point
  assert text == "sign ? 0.90"
