"""Drawing detections on images (PIL only, no TensorFlow).

Boxes are `[ymin, xmin, ymax, xmax]` ("yxyx") in pixels of the image drawn on,
exactly what the exported model's `boxes` output holds.

Captions use a Unicode TrueType font from the distribution's packages (DejaVu Sans
from fonts-dejavu-core: Latin, Greek, Cyrillic...; Noto Sans CJK from fonts-noto-cjk
when installed), chosen per caption among those that have every glyph. A character
no installed font has is drawn as "?" (never as an empty box), and without any
TrueType font PIL's built-in font is used.
"""
from __future__ import annotations

import colorsys
import functools
import os
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Color = Tuple[int, int, int]

# Golden-ratio hue steps keep consecutive class ids far apart on the colour wheel.
_GOLDEN_RATIO_CONJUGATE = 0.618033988749895


# Searched in order; the first that has every glyph of a caption draws it.
FONT_FILES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
)
FONT_SIZE = 11
MISSING_GLYPH = "?"


@functools.lru_cache(maxsize=None)
def installed_fonts(size: int = FONT_SIZE) -> Tuple[ImageFont.ImageFont, ...]:
  """The TrueType fonts of FONT_FILES that exist, else PIL's built-in font."""
  fonts = tuple(ImageFont.truetype(path, size) for path in FONT_FILES if os.path.exists(path))
  return fonts or (ImageFont.load_default(),)


@functools.lru_cache(maxsize=4096)
def _has_glyph(font: ImageFont.ImageFont, char: str) -> bool:
  """Whether `font` draws `char` with its own glyph rather than the missing-glyph box."""
  if char.isspace() or not isinstance(font, ImageFont.FreeTypeFont):
    return char.isspace() or char.isascii()
  mask = font.getmask(char)
  notdef = font.getmask("\U0010fffd")  # a private-use code point no font defines
  return not (mask.size == notdef.size and bytes(mask) == bytes(notdef))


def caption_font(text: str, size: int = FONT_SIZE) -> Tuple[ImageFont.ImageFont, str]:
  """(font, text to draw): the first installed font with every glyph of `text`; else the
  first font, with the characters it lacks replaced by MISSING_GLYPH."""
  fonts: List[ImageFont.ImageFont] = list(installed_fonts(size))
  for font in fonts:
    if all(_has_glyph(font, c) for c in text):
      return font, text
  return fonts[0], "".join(c if _has_glyph(fonts[0], c) else MISSING_GLYPH for c in text)


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
  width = line_width or max(1, round(min(canvas.size) / 200))
  for (ymin, xmin, ymax, xmax), class_id, label, score in zip(boxes, class_ids, labels, scores):
    color = class_color(class_id)
    draw.rectangle([xmin, ymin, xmax, ymax], outline=color, width=width)
    font, caption = caption_font(f"{label} {float(score):.2f}")
    left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
    text_w, text_h = right - left + 4, bottom - top + 4
    # Caption above the box, or inside its top edge when the box touches the image top.
    y0 = ymin - text_h if ymin - text_h >= 0 else ymin
    draw.rectangle([xmin, y0, xmin + text_w, y0 + text_h], fill=color)
    draw.text((xmin + 2 - left, y0 + 2 - top), caption, fill=_text_color(color), font=font)
  return canvas
