"""The evaluation report: one self-contained HTML page per evaluation.

Everything is inline (SVG charts, base64 PNG images, CSS, a few lines of script
that only check the page rendered), so the file can be opened from a
bucket, an e-mail or a CI artifact without network access. It shows the
headline metrics next to the baseline's, per-class AP (sorted bars),
precision-recall curves at IoU 0.5 and 0.75 (overall and per class), AP and
recall by object size, sample images with ground truth and detections
(including the images with the most missed objects and the most confident false
positives), and the blessing decision with its reason.

Pure Python + numpy + PIL; the inputs are the Evaluator's results.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import io
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from retinanet.evaluation import coco_metrics
from retinanet.ops import box_ops
from retinanet.serving import visualize

HEADLINE = ("AP", "AP50", "AP75", "APs", "APm", "APl", "ARmax1", "ARmax10", "ARmax100")
SIZES = (("small", "APs", "ARs"), ("medium", "APm", "ARm"), ("large", "APl", "ARl"))
MATCH_IOU = 0.5
# Detections at or above this score are drawn and count as predictions when picking
# the images with missed objects / false positives.
DRAW_SCORE = 0.3
SAMPLES_PER_GROUP = 4
GROUND_TRUTH_COLOR = (255, 255, 255)
CURVE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
                "#17becf", "#bcbd22", "#7f7f7f")


@dataclasses.dataclass
class ImageErrors:
  """What one image got wrong at IoU MATCH_IOU among detections scored >= DRAW_SCORE."""
  image_id: int
  missed: int                       # non-crowd ground-truth boxes no detection matched
  worst_false_positive: float       # the highest score of an unmatched detection (0 = none)


def match_image(gt_boxes: np.ndarray, gt_classes: Sequence[int], gt_crowd: Sequence[bool],
                det_boxes: np.ndarray, det_classes: Sequence[int], det_scores: Sequence[float],
                iou_threshold: float = MATCH_IOU) -> Tuple[np.ndarray, np.ndarray]:
  """Greedy COCO-style matching of one image: (gt_matched [G] bool, det_matched [D] bool).

  Detections are taken by decreasing score; each takes the unmatched same-class
  ground-truth box of highest IoU >= iou_threshold. A detection on a crowd
  region counts as matched (COCO ignores it), and crowd boxes are never missed.
  Boxes are yxyx.
  """
  gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
  det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
  gt_classes, det_classes = np.asarray(gt_classes), np.asarray(det_classes)
  crowd = np.asarray(gt_crowd, bool).reshape(-1)
  gt_matched, det_matched = crowd.copy(), np.zeros(len(det_boxes), bool)
  if not len(gt_boxes) or not len(det_boxes):
    return gt_matched, det_matched
  ious = box_ops.pairwise_iou_yxyx(det_boxes, gt_boxes).numpy()  # [D, G]
  for d in np.argsort(-np.asarray(det_scores, np.float64), kind="stable"):
    same = (gt_classes == det_classes[d]) & (ious[d] >= iou_threshold)
    free = np.flatnonzero(same & ~gt_matched)
    if free.size:
      gt_matched[free[np.argmax(ious[d, free])]] = True
      det_matched[d] = True
    elif (same & crowd).any():
      det_matched[d] = True
  return gt_matched, det_matched


def image_errors(ground_truth: Mapping[str, Any], detections: Sequence[Mapping[str, Any]],
                 image_ids: Sequence[int]) -> List[ImageErrors]:
  """ImageErrors of every evaluated image from COCO dicts (xywh boxes)."""
  gts: Dict[int, List[Mapping[str, Any]]] = {}
  for ann in ground_truth["annotations"]:
    gts.setdefault(ann["image_id"], []).append(ann)
  dets: Dict[int, List[Mapping[str, Any]]] = {}
  for det in detections:
    if det["score"] >= DRAW_SCORE:
      dets.setdefault(det["image_id"], []).append(det)
  out = []
  for image_id in image_ids:
    g, d = gts.get(image_id, []), dets.get(image_id, [])
    gt_matched, det_matched = match_image(
        to_yxyx([a["bbox"] for a in g]), [a["category_id"] for a in g],
        [bool(a.get("iscrowd", 0)) for a in g], to_yxyx([x["bbox"] for x in d]),
        [x["category_id"] for x in d], [x["score"] for x in d])
    false_scores = [x["score"] for x, m in zip(d, det_matched) if not m]
    out.append(ImageErrors(int(image_id), int((~gt_matched).sum()),
                           float(max(false_scores, default=0.0))))
  return out


def pick_samples(errors: Sequence[ImageErrors], per_group: int = SAMPLES_PER_GROUP
                 ) -> List[Tuple[str, List[int]]]:
  """[(group title, image ids)]: most missed objects, most confident false positives,
  and the first images by id; an image appears once."""
  used: set = set()

  def take(candidates: Sequence[ImageErrors]) -> List[int]:
    ids = [e.image_id for e in candidates if e.image_id not in used][:per_group]
    used.update(ids)
    return ids

  by_id = sorted(errors, key=lambda e: e.image_id)
  groups = [
      ("Most missed objects", take(sorted((e for e in by_id if e.missed),
                                          key=lambda e: -e.missed))),
      ("Most confident false positives", take(sorted(
          (e for e in by_id if e.worst_false_positive > 0), key=lambda e: -e.worst_false_positive))),
      ("First images", take(by_id)),
  ]
  return [(title, ids) for title, ids in groups if ids]


def draw_sample(image: np.ndarray, ground_truth: Sequence[Mapping[str, Any]],
                detections: Sequence[Mapping[str, Any]], class_index: Mapping[int, int],
                names: Mapping[int, str], max_side: int = 320) -> Image.Image:
  """Ground truth as thin white boxes, detections (score >= DRAW_SCORE) in class colours."""
  canvas = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
  draw = ImageDraw.Draw(canvas)
  for ann in ground_truth:
    ymin, xmin, ymax, xmax = to_yxyx([ann["bbox"]])[0]
    draw.rectangle([xmin, ymin, xmax, ymax], outline=GROUND_TRUTH_COLOR, width=1)
  shown = [d for d in detections if d["score"] >= DRAW_SCORE]
  canvas = visualize.draw_detections(
      canvas, to_yxyx([d["bbox"] for d in shown]),
      [class_index.get(d["category_id"], 0) for d in shown],
      [names.get(d["category_id"], str(d["category_id"])) for d in shown],
      [d["score"] for d in shown])
  scale = max_side / max(canvas.size)
  if scale < 1:
    canvas = canvas.resize((round(canvas.width * scale), round(canvas.height * scale)))
  return canvas


def build_report(*, title: str, metrics: Mapping[str, float],
                 per_class: Sequence[Mapping[str, Any]], pr_curves: Mapping[str, Any],
                 blessing: Mapping[str, Any], baseline_metrics: Optional[Mapping[str, float]] = None,
                 samples: Sequence[Tuple[str, Sequence[Tuple[str, Image.Image]]]] = (),
                 details: Sequence[Tuple[str, str]] = ()) -> str:
  """The report's HTML text.

  Args:
    metrics: the 12 COCO numbers; baseline_metrics: the baseline model's (or None).
    per_class: coco_metrics per-class entries (category_id, name, AP, num_ground_truth).
    pr_curves: coco_metrics.pr_curves output.
    blessing: {"blessed": bool, "reason": str}.
    samples: [(group title, [(caption, image)])].
    details: extra (key, value) rows (model, split, post-processing...).
  """
  names = {int(c["category_id"]): str(c["name"]) for c in per_class}
  parts = [_HEAD.format(title=html.escape(title))]
  verdict = "blessed" if blessing.get("blessed") else "not blessed"
  parts.append(f'<h1>{html.escape(title)}</h1><p class="verdict {verdict.replace(" ", "-")}">'
               f'<b>{verdict.capitalize()}</b>: {html.escape(str(blessing.get("reason", "")))}</p>')
  parts.append(_metrics_table(metrics, baseline_metrics))
  if details:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in details)
    parts.append(f'<table class="details">{rows}</table>')
  parts.append("<h2>Per-class AP@[.5:.95]</h2>" + _class_bars(per_class))
  parts.append("<h2>Precision-recall, all classes</h2><div class=\"row\">" + "".join(
      _curves_svg(f"IoU {iou}", pr_curves["recall"], [("all classes", curves["all"])])
      for iou, curves in pr_curves["iou"].items()) + "</div>")
  parts.append("<h2>Precision-recall per class</h2><div class=\"row\">" + "".join(
      _curves_svg(f"IoU {iou}", pr_curves["recall"],
                  [(names.get(int(k), str(k)), v) for k, v in curves["per_class"].items()])
      for iou, curves in pr_curves["iou"].items()) + "</div>")
  parts.append("<h2>By object size</h2>" + _size_bars(metrics, baseline_metrics))
  for group, images in samples:
    cells = "".join(f'<figure><img alt="{html.escape(caption)}" src="{_png_data_uri(image)}">'
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                    for caption, image in images)
    parts.append(f'<h2>{html.escape(group)}</h2><div class="grid">{cells}</div>')
  if samples:
    parts.append(f"<p class=\"note\">White: ground truth. Coloured: detections with score &ge; "
                 f"{DRAW_SCORE:g}. Misses and false positives are counted at IoU {MATCH_IOU:g}."
                 "</p>")
  parts.append(_TAIL)
  return "".join(parts)


# ------------------------------------------------------------------ helpers

def to_yxyx(boxes_xywh: Sequence[Sequence[float]]) -> np.ndarray:
  """COCO [x, y, width, height] boxes (possibly none) -> yxyx [N, 4]."""
  return coco_metrics.coco_xywh_to_boxes_yxyx(np.asarray(boxes_xywh, np.float64).reshape(-1, 4))


def _png_data_uri(image: Image.Image) -> str:
  buffer = io.BytesIO()
  image.save(buffer, format="PNG")
  return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _fmt(value: Optional[float]) -> str:
  return "&ndash;" if value is None or value < 0 else f"{value:.3f}"


def _metrics_table(metrics: Mapping[str, float], baseline: Optional[Mapping[str, float]]) -> str:
  head = "<tr><th></th>" + "".join(f"<th>{k}</th>" for k in HEADLINE) + "</tr>"
  rows = "<tr><th>this model</th>" + "".join(f"<td>{_fmt(metrics.get(k))}</td>"
                                              for k in HEADLINE) + "</tr>"
  if baseline:
    rows += "<tr><th>baseline (last blessed)</th>" + "".join(
        f"<td>{_fmt(baseline.get(k))}</td>" for k in HEADLINE) + "</tr>"
    rows += "<tr><th>difference</th>" + "".join(
        f"<td>{metrics[k] - baseline[k]:+.3f}</td>" if k in baseline and k in metrics else "<td></td>"
        for k in HEADLINE) + "</tr>"
  return f'<table class="metrics">{head}{rows}</table>'


def _bar_chart(items: Sequence[Tuple[str, Optional[float]]], css: str, width: int = 720,
               max_value: float = 1.0) -> str:
  """Horizontal bars, one row per (label, value in [0, max_value]; None = undefined)."""
  row_h, label_w = 18, 180
  height = row_h * len(items) + 24
  plot_w = width - label_w - 60
  out = [f'<svg class="chart {css}" width="{width}" height="{height}" '
         f'viewBox="0 0 {width} {height}" role="img">']
  for i, (label, value) in enumerate(items):
    y = 4 + i * row_h
    out.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">'
               f"{html.escape(label)}</text>")
    if value is None or value < 0:
      out.append(f'<text x="{label_w + 4}" y="{y + 13}" class="muted">no ground truth</text>')
      continue
    w = max(1.0, plot_w * min(value, max_value) / max_value)
    out.append(f'<rect class="bar" x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row_h - 5}"/>'
               f'<text x="{label_w + w + 4:.1f}" y="{y + 13}">{value:.3f}</text>')
  axis_y = height - 16
  for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
    x = label_w + plot_w * tick
    out.append(f'<line class="grid" x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{axis_y}"/>'
               f'<text class="tick" x="{x:.1f}" y="{height - 3}" text-anchor="middle">'
               f"{tick * max_value:g}</text>")
  out.append("</svg>")
  return "".join(out)


def _class_bars(per_class: Sequence[Mapping[str, Any]]) -> str:
  entries = sorted(per_class, key=lambda c: (c["AP"] is None, -(c["AP"] or 0.0)))
  return _bar_chart([(f"{c['name']} ({c['num_ground_truth']})", c["AP"]) for c in entries],
                    "per-class")


def _size_bars(metrics: Mapping[str, float], baseline: Optional[Mapping[str, float]]) -> str:
  items = []
  for size, ap, ar in SIZES:
    items += [(f"AP {size}", metrics.get(ap)), (f"recall@100 {size}", metrics.get(ar))]
    if baseline:
      items += [(f"baseline AP {size}", baseline.get(ap))]
  return _bar_chart(items, "by-size")


def _curves_svg(title: str, recall: Sequence[float],
                curves: Sequence[Tuple[str, Sequence[float]]], size: int = 340) -> str:
  pad, legend_h = 36, 16 * min(len(curves), 10) + 12
  plot = size - 2 * pad
  height = size + legend_h
  out = [f'<svg class="chart pr" width="{size}" height="{height}" viewBox="0 0 {size} {height}" '
         f'role="img"><text x="{size / 2}" y="16" text-anchor="middle" class="title">'
         f"{html.escape(title)}</text>",
         f'<rect class="frame" x="{pad}" y="{pad}" width="{plot}" height="{plot}"/>']
  for tick in (0.0, 0.5, 1.0):
    out.append(f'<text class="tick" x="{pad + plot * tick:.1f}" y="{pad + plot + 14}" '
               f'text-anchor="middle">{tick:g}</text><text class="tick" x="{pad - 4}" '
               f'y="{pad + plot * (1 - tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
  out.append(f'<text class="tick" x="{size / 2}" y="{pad + plot + 28}" text-anchor="middle">'
             f'recall</text>')
  for i, (label, precision) in enumerate(curves[:10]):
    points = " ".join(f"{pad + plot * r:.1f},{pad + plot * (1 - max(p, 0.0)):.1f}"
                      for r, p in zip(recall, precision))
    color = CURVE_COLORS[i % len(CURVE_COLORS)]
    out.append(f'<polyline class="curve" fill="none" stroke="{color}" points="{points}"/>')
    y = size + 12 + 16 * i
    out.append(f'<rect x="{pad}" y="{y - 9}" width="10" height="10" fill="{color}"/>'
               f'<text x="{pad + 14}" y="{y}">{html.escape(label)} '
               f"(AP {np.mean(np.maximum(precision, 0)):.3f})</text>")
  out.append("</svg>")
  return "".join(out)


_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: "DejaVu Sans", "Noto Sans", Arial, sans-serif; margin: 24px; color: #222; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 17px; margin-top: 28px; }}
table {{ border-collapse: collapse; margin: 8px 0; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; font-size: 13px; text-align: right; }}
table.details th, table.details td {{ text-align: left; }}
.verdict {{ padding: 6px 10px; display: inline-block; border-radius: 4px; }}
.verdict.blessed {{ background: #e3f6e3; }} .verdict.not-blessed {{ background: #fbe4e4; }}
svg.chart text {{ font-size: 11px; fill: #222; }} svg.chart text.title {{ font-size: 13px; }}
svg.chart .muted {{ fill: #999; }} svg.chart .tick {{ fill: #666; }}
svg.chart .bar {{ fill: #4c78a8; }} svg.chart .grid {{ stroke: #eee; }}
svg.chart .frame {{ fill: none; stroke: #999; }} svg.chart .curve {{ stroke-width: 1.6; }}
.row {{ display: flex; flex-wrap: wrap; gap: 16px; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; }} figcaption {{ font-size: 12px; color: #555; }}
.note {{ font-size: 12px; color: #555; }}
</style></head><body>
"""

# Marks the page rendered (every image decoded, every chart drawn, no script error) on
# <body data-rendered>, which the headless-browser test reads; nothing else runs.
_TAIL = """<script>
(function () {
  var errors = [];
  window.addEventListener("error", function (e) { errors.push(String(e.message)); });
  window.addEventListener("load", function () {
    var images = Array.prototype.slice.call(document.images);
    var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
    var charts = document.querySelectorAll("svg.chart");
    var drawn = Array.prototype.filter.call(charts, function (s) {
      var box = s.getBoundingClientRect(); return box.width > 0 && box.height > 0; });
    document.body.setAttribute("data-rendered", JSON.stringify({
      images: images.length, broken_images: broken.length, charts: charts.length,
      drawn_charts: drawn.length, errors: errors}));
  });
})();
</script></body></html>
"""
