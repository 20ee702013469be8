"""Run an exported RetinaNet over a folder of images.

  python -m retinanet.serving.inference --model_dir DIR --image_dir DIR \\
      --output_dir DIR [--batch_size 8] [--score_threshold 0.3] [--no_draw]

`--model_dir` is an export dir (holds saved_model.pb) or a pushed base dir
`<base>/<version>/...`, whose highest version is used. Images (*.jpg, *.jpeg,
*.png, *.bmp, *.gif directly inside `--image_dir`) go through the
`serve_encoded` signature in batches, so their sizes may differ.

Results are in the displayed frame: a JPEG is turned by its EXIF orientation
(as any viewer shows it) before detection, and height, width, boxes and the
drawn PNG are those of the turned image. An export that keeps the stored pixel
order (postprocess.apply_exif_orientation=false, or one made before the
setting) has its boxes turned here instead, with the graph's own EXIF reader.

Writes to `--output_dir`:
  detections.json  {"model_dir", "score_threshold", "images": [{"file", "height",
                   "width", "detections": [{"box_yxyx", "box_xywh", "score",
                   "class_id", "category_id", "class_name"}]}]}; boxes in
                   original image pixels of the image as displayed, box_xywh is
                   COCO [x, y, width, height].
  <stem>.png       the displayed image with boxes, class names and scores drawn
                   (same size).

`--score_threshold` filters on top of the export-time postprocess threshold.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from PIL import Image

from retinanet import coco
from retinanet import layout
from retinanet.serving import export
from retinanet.serving import preprocess
from retinanet.serving import versioning
from retinanet.serving import visualize

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def resolve_saved_model_dir(model_dir: str) -> str:
  """`model_dir` itself if it holds saved_model.pb, else its highest numeric version subdir.

  Pushed models live in `<base>/<version>/` (TF Serving layout, see
  `versioning`); passing `<base>` serves the newest version.
  """
  if tf.io.gfile.exists(os.path.join(model_dir, layout.SAVED_MODEL_FILE)):
    return model_dir
  latest = versioning.latest_version_dir(model_dir)
  if latest is None:
    raise FileNotFoundError(
        f"--model_dir={model_dir}: holds no {layout.SAVED_MODEL_FILE} and no numeric version "
        "subdirectory with one; pass an export dir or a pushed serving base dir")
  return latest


def list_images(image_dir: str) -> List[str]:
  """Sorted file names (not paths) of the images directly inside `image_dir`."""
  if not tf.io.gfile.isdir(image_dir):
    raise FileNotFoundError(f"--image_dir={image_dir}: no such directory")
  names = sorted(n for n in tf.io.gfile.listdir(image_dir)
                 if n.lower().endswith(IMAGE_EXTENSIONS))
  if not names:
    raise FileNotFoundError(
        f"--image_dir={image_dir}: no images with extensions {', '.join(IMAGE_EXTENSIONS)}")
  return names


def output_png_names(names: Sequence[str]) -> List[str]:
  """`cat.jpg` -> `cat.png`; stems shared by several inputs keep their extension (`cat_jpg.png`)."""
  stems = [os.path.splitext(n) for n in names]
  counts = collections.Counter(stem for stem, _ in stems)
  return [f"{stem}.png" if counts[stem] == 1 else f"{stem}_{ext.lstrip('.')}.png"
          for stem, ext in stems]


def image_detections(outputs: Dict[str, np.ndarray], index: int,
                     label_map: coco.LabelMap,
                     score_threshold: float) -> List[Dict[str, Any]]:
  """The detections of image `index` of a batch of serving outputs, as JSON-ready dicts."""
  valid = int(outputs["valid_detections"][index])
  result = []
  for k in range(valid):
    score = float(outputs["scores"][index, k])
    if score < score_threshold:
      continue
    ymin, xmin, ymax, xmax = (float(v) for v in outputs["boxes"][index, k])
    class_id = int(outputs["class_ids"][index, k])
    result.append({
        "box_yxyx": [ymin, xmin, ymax, xmax],
        "box_xywh": [xmin, ymin, xmax - xmin, ymax - ymin],
        "score": score,
        "class_id": class_id,
        "category_id": int(outputs["category_ids"][index, k]),
        "class_name": label_map.name_of(class_id),
    })
  return result


def draw_image(encoded: bytes, detections: Sequence[Dict[str, Any]]) -> Image.Image:
  """The encoded image, decoded as the serving graph does (EXIF orientation applied), with
  `detections` (image_detections output) drawn."""
  image = preprocess.decode_image(tf.constant(encoded)).numpy()
  return visualize.draw_detections(
      image, np.asarray([d["box_yxyx"] for d in detections], np.float32).reshape(-1, 4),
      [d["class_id"] for d in detections], [d["class_name"] for d in detections],
      [d["score"] for d in detections])


def run_inference(model_dir: str, image_dir: str, output_dir: str, batch_size: int = 8,
                  score_threshold: float = 0.3, draw: bool = True) -> Dict[str, Any]:
  """Detects objects in every image of `image_dir`; writes and returns detections.json content."""
  if batch_size < 1:
    raise ValueError(f"--batch_size={batch_size} must be >= 1")
  saved_model_dir = resolve_saved_model_dir(model_dir)
  label_map = export.load_label_map(saved_model_dir)
  serve = tf.saved_model.load(saved_model_dir).signatures[export.SERVE_ENCODED]
  displayed = export.applies_exif_orientation(saved_model_dir)
  names = list_images(image_dir)
  png_names = output_png_names(names)
  tf.io.gfile.makedirs(output_dir)
  records = []
  start = time.perf_counter()
  for first in range(0, len(names), batch_size):
    batch_names = names[first:first + batch_size]
    encoded = []
    for name in batch_names:
      with tf.io.gfile.GFile(os.path.join(image_dir, name), "rb") as f:
        encoded.append(f.read())
    try:
      outputs = {k: v.numpy() for k, v in serve(encoded_images=tf.constant(encoded)).items()}
    except tf.errors.InvalidArgumentError as e:
      raise ValueError(f"{image_dir}: cannot decode one of {batch_names}: {e.message}") from e
    if not displayed:
      outputs = export.outputs_in_displayed_frame(outputs, encoded)
    for i, name in enumerate(batch_names):
      detections = image_detections(outputs, i, label_map, score_threshold)
      height, width = (int(v) for v in outputs["image_size"][i])
      records.append({"file": name, "height": height, "width": width,
                      "detections": detections})
      if draw:
        drawn = draw_image(encoded[i], detections)
        with tf.io.gfile.GFile(os.path.join(output_dir, png_names[first + i]), "wb") as f:
          drawn.save(f, format="PNG")
    done = first + len(batch_names)
    rate = done / max(time.perf_counter() - start, 1e-9)
    print(f"[{done}/{len(names)}] {rate:.1f} images/s", file=sys.stderr, flush=True)
  result = {"model_dir": saved_model_dir, "score_threshold": score_threshold, "images": records}
  with tf.io.gfile.GFile(os.path.join(output_dir, layout.DETECTIONS_FILE), "w") as f:
    json.dump(result, f, indent=1)
  return result


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model_dir", required=True,
                      help="export dir, or pushed base dir with numeric version subdirs")
  parser.add_argument("--image_dir", required=True, help="folder of JPEG/PNG/BMP/GIF images")
  parser.add_argument("--output_dir", required=True, help="where detections.json and PNGs go")
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--score_threshold", type=float, default=0.3,
                      help="keep detections with at least this score")
  parser.add_argument("--no_draw", action="store_true", help="write only detections.json")
  args = parser.parse_args(argv)
  result = run_inference(args.model_dir, args.image_dir, args.output_dir,
                         batch_size=args.batch_size, score_threshold=args.score_threshold,
                         draw=not args.no_draw)
  total = sum(len(r["detections"]) for r in result["images"])
  print(f"{len(result['images'])} images, {total} detections -> {args.output_dir}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
