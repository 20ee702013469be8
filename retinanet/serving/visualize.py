"""Drawing detections on images (PIL only, no TensorFlow).

Boxes are `[ymin, xmin, ymax, xmax]` ("yxyx") in pixels of the image drawn on,
exactly what the exported model's `boxes` output holds.
"""
from __future__ import annotations

import colorsys
from typing import Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Color = Tuple[int, int, int]

# Golden-ratio hue steps keep consecutive class ids far apart on the colour wheel.
_GOLDEN_RATIO_CONJUGATE = 0.618033988749895


def class_color(class_id: int) -> Color:
  """A deterministic, saturated RGB colour for a contiguous class index."""
  hue = (0.13 + int(class_id) * _GOLDEN_RATIO_CONJUGATE) % 1.0
  value = 0.95 if int(class_id) % 2 == 0 else 0.75
  r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
  return (int(round(r * 255)), int(round(g * 255)), int(round(b * 255)))


def _text_color(background: Color) -> Color:
  """Black or white, whichever reads better on `background` (ITU-R BT.601 luma)."""
  r, g, b = background
  return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def draw_detections(image: Image.Image | np.ndarray,
                    boxes_yxyx: np.ndarray,
                    class_ids: Sequence[int],
                    labels: Sequence[str],
                    scores: Sequence[float],
                    line_width: int = 0) -> Image.Image:
  """Returns a new RGB image with every detection drawn as a box and a caption.

  Args:
    image: PIL image or uint8 array [H, W, 3] (or [H, W]); not modified.
    boxes_yxyx: float [K, 4] yxyx pixel boxes of this image.
    class_ids: K contiguous class indices (they pick the colours).
    labels: K class names for the captions.
    scores: K scores in [0, 1] for the captions.
    line_width: box outline width in pixels; 0 picks one from the image size.

  The output has the same width and height as `image`.
  """
  boxes = np.asarray(boxes_yxyx, dtype=np.float64).reshape(-1, 4)
  if not len(boxes) == len(class_ids) == len(labels) == len(scores):
    raise ValueError(
        f"draw_detections: got {len(boxes)} boxes, {len(class_ids)} class ids, {len(labels)} "
        f"labels and {len(scores)} scores; pass one of each per detection")
  if isinstance(image, np.ndarray):
    image = Image.fromarray(np.asarray(image, dtype=np.uint8))
  canvas = image.convert("RGB")  # convert() always copies
  draw = ImageDraw.Draw(canvas)
  font = ImageFont.load_default()
  width = line_width or max(1, round(min(canvas.size) / 200))
  for (ymin, xmin, ymax, xmax), class_id, label, score in zip(boxes, class_ids, labels, scores):
    color = class_color(class_id)
    draw.rectangle([xmin, ymin, xmax, ymax], outline=color, width=width)
    caption = f"{label} {float(score):.2f}"
    left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
    text_w, text_h = right - left + 4, bottom - top + 4
    # Caption above the box, or inside its top edge when the box touches the image top.
    y0 = ymin - text_h if ymin - text_h >= 0 else ymin
    draw.rectangle([xmin, y0, xmin + text_w, y0 + text_h], fill=color)
    draw.text((xmin + 2 - left, y0 + 2 - top), caption, fill=_text_color(color), font=font)
  return canvas
