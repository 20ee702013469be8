"""PNG plots of the dataset statistics report (PIL only; no plotting library in the lock).

Each plot is a histogram over the report's fixed bins, one bar colour per
split, each split normalized to fractions so splits of different sizes
compare; vertical lines mark reference values (the anchors' aspect ratios,
the matcher's IoU thresholds).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageFont

SPLIT_COLORS = {"train": (31, 119, 180), "val": (255, 127, 14)}
MARKER_COLOR = (200, 30, 30)
WIDTH, HEIGHT = 900, 420
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 60, 20, 40, 60


def bin_position(value: float, boundaries: Sequence[float], log: bool) -> float:
  """Where `value` falls on the bar axis: bin k spans [k, k + 1) and bin 0 is the underflow."""
  b = np.asarray(boundaries, np.float64)
  transform = np.log if log else (lambda v: v)
  k = int(np.searchsorted(b, value, side="right"))
  if k == 0 or k == len(b):
    return float(k) + 0.5
  lo, hi = transform(b[k - 1]), transform(b[k])
  return k + float((transform(value) - lo) / (hi - lo))


def _label(value: float) -> str:
  return f"{value:.3g}"


def histogram_png(path: str, *, title: str, series: Mapping[str, Sequence[int]],
                  boundaries: Sequence[float], markers: Sequence[Tuple[float, str]] = (),
                  log_bins: bool = True) -> None:
  """Draws `series` ({split: counts}, len(boundaries) + 1 bins each) into a PNG at `path`."""
  image = Image.new("RGB", (WIDTH, HEIGHT), "white")
  draw = ImageDraw.Draw(image)
  font = ImageFont.load_default()
  num_bins = len(boundaries) + 1
  plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
  plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
  fractions = {name: np.asarray(c, np.float64) / max(sum(c), 1) for name, c in series.items()}
  top = max([f.max() for f in fractions.values() if f.size] + [1e-9])
  x0, y0 = MARGIN_LEFT, MARGIN_TOP + plot_h

  def x_at(position: float) -> float:
    return x0 + position / num_bins * plot_w

  bar_w = plot_w / num_bins / max(len(fractions), 1)
  for j, (name, values) in enumerate(sorted(fractions.items())):
    color = SPLIT_COLORS.get(name, (90, 90, 90))
    for k, v in enumerate(values):
      if v > 0:
        left = x_at(k) + j * bar_w
        draw.rectangle([left, y0 - v / top * plot_h, left + bar_w - 1, y0], fill=color)
    legend_x = x0 + plot_w - 90 * (len(fractions) - j)
    draw.rectangle([legend_x, 6, legend_x + 12, 18], fill=color)
    draw.text((legend_x + 16, 6), name, fill="black", font=font)
  draw.line([x0, y0, x0 + plot_w, y0], fill="black")
  draw.line([x0, MARGIN_TOP, x0, y0], fill="black")
  for k in range(0, len(boundaries), max(1, len(boundaries) // 12)):
    x = x_at(k + 1)
    draw.line([x, y0, x, y0 + 4], fill="black")
    draw.text((x - 10, y0 + 8), _label(boundaries[k]), fill="black", font=font)
  draw.text((x0, 2), title, fill="black", font=font)
  draw.text((4, MARGIN_TOP - 14), f"max {top:.2f}", fill="black", font=font)
  for value, text in markers:
    x = x_at(bin_position(value, boundaries, log_bins))
    draw.line([x, MARGIN_TOP, x, y0], fill=MARKER_COLOR, width=2)
    draw.text((x + 3, MARGIN_TOP + 2), text, fill=MARKER_COLOR, font=font)
  with tf.io.gfile.GFile(path, "wb") as f:
    image.save(f, format="PNG")


def write_plots(report: Mapping[str, Any], output_dir: str) -> Dict[str, str]:
  """The report's three plots; returns {plot name: path}."""
  tf.io.gfile.makedirs(output_dir)
  splits = report["splits"]
  paths = {name: os.path.join(output_dir, f"{name}.png")
           for name in ("box_sizes", "aspect_ratios", "best_anchor_iou")}

  def series(measure: str, only: Optional[str] = None) -> Dict[str, Sequence[int]]:
    return {name: s[measure]["histogram"]["counts"] for name, s in splits.items()
            if only in (None, name)}

  def boundaries(measure: str) -> Sequence[float]:
    return next(iter(splits.values()))[measure]["histogram"]["boundaries"]

  anchors = report["anchors"]
  smallest = anchors["anchor_size"] * 2 ** anchors["min_level"]
  largest = (anchors["anchor_size"] * 2 ** anchors["max_level"] *
             2 ** ((anchors["scales_per_octave"] - 1) / anchors["scales_per_octave"]))
  histogram_png(paths["box_sizes"], title="box size sqrt(w*h), pixels at the model input scale",
                series=series("sqrt_area"), boundaries=boundaries("sqrt_area"),
                markers=[(smallest, "smallest anchor"), (largest, "largest anchor")])
  histogram_png(paths["aspect_ratios"],
                title="aspect ratio w/h of train boxes; red: the anchors' aspect ratios",
                series=series("aspect_ratio", "train"), boundaries=boundaries("aspect_ratio"),
                markers=[(r, f"{r:g}") for r in anchors["aspect_ratios"]])
  matcher = report["matcher"]
  histogram_png(paths["best_anchor_iou"], title="best-anchor IoU per box",
                series=series("best_anchor_iou"), boundaries=boundaries("best_anchor_iou"),
                markers=[(matcher["negative_iou"], "negative"),
                         (matcher["positive_iou"], "positive")], log_bins=False)
  return paths
