"""Run an exported RetinaNet over a folder of images.

  python -m retinanet.serving.inference --model_dir DIR --image_dir DIR \\
      --output_dir DIR [--batch_size 8] [--score_threshold 0.3] [--no_draw] [--recursive]

`--model_dir` is an export dir (holds saved_model.pb) or a pushed base dir
`<base>/<version>/...`, whose highest version is used. Images (*.jpg, *.jpeg,
*.png, *.bmp, *.gif inside `--image_dir`; with `--recursive` also in its
subfolders, named by their relative path) go through the `serve_encoded`
signature in batches, so their sizes may differ. An image the graph cannot
decode (a truncated or corrupt file) is skipped, named and counted; the others
go on. detections.json is rewritten after every batch, so a crash loses
nothing already done.

Results are in the displayed frame: a JPEG is turned by its EXIF orientation
(as any viewer shows it) before detection, and height, width, boxes and the
drawn PNG are those of the turned image. An export that keeps the stored pixel
order (postprocess.apply_exif_orientation=false, or one made before the
setting) has its boxes turned here instead, with the graph's own EXIF reader.

Writes to `--output_dir`:
  detections.json  {"model_dir", "score_threshold", "images": [{"file", "height",
                   "width", "detections": [{"box_yxyx", "box_xywh", "score",
                   "class_id", "category_id", "class_name"}]}],
                   "skipped": [{"file", "reason"}]}; boxes in
                   original image pixels of the image as displayed, box_xywh is
                   COCO [x, y, width, height].
  <stem>.png       the displayed image with boxes, class names and scores drawn
                   (same size; in the same subfolder as its image).

`--score_threshold` filters on top of the export-time postprocess threshold.
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from PIL import Image

from retinanet import coco
from retinanet import console
from retinanet import fileio
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


def list_images(image_dir: str, recursive: bool = False) -> List[str]:
  """Sorted paths, relative to `image_dir`, of the images inside it (and, recursive, inside
  its subfolders)."""
  if not tf.io.gfile.isdir(image_dir):
    raise FileNotFoundError(f"--image_dir={image_dir}: no such directory")
  if recursive:
    found = [os.path.relpath(os.path.join(directory, n), image_dir)
             for directory, _, files in tf.io.gfile.walk(image_dir) for n in files]
  else:
    found = [n for n in tf.io.gfile.listdir(image_dir)
             if not tf.io.gfile.isdir(os.path.join(image_dir, n))]
  names = sorted(n for n in found if n.lower().endswith(IMAGE_EXTENSIONS))
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


def _serve_batch(serve, encoded: List[bytes], names: Sequence[str]):
  """Serving outputs of the decodable images of a batch: (outputs, kept indices, skipped
  [{"file", "reason"}]). A batch the graph rejects is retried one image at a time."""
  if len(encoded) > 1:
    try:
      return ({k: v.numpy() for k, v in serve(encoded_images=tf.constant(encoded)).items()},
              list(range(len(encoded))), [])
    except tf.errors.InvalidArgumentError:
      pass
  outputs, kept, skipped = [], [], []
  for i, (data, name) in enumerate(zip(encoded, names)):
    try:
      outputs.append({k: v.numpy() for k, v in serve(encoded_images=tf.constant([data])).items()})
      kept.append(i)
    except tf.errors.InvalidArgumentError as e:
      skipped.append({"file": name, "reason": e.message.strip().splitlines()[0]})
  merged = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]} if outputs else {}
  return merged, kept, skipped


def _write_result(result: Dict[str, Any], output_dir: str) -> None:
  """detections.json, replaced whole (written beside it, then renamed)."""
  path = os.path.join(output_dir, layout.DETECTIONS_FILE)
  fileio.write_text(path + ".partial", json.dumps(result, indent=1))
  tf.io.gfile.rename(path + ".partial", path, overwrite=True)


def run_inference(model_dir: str, image_dir: str, output_dir: str, batch_size: int = 8,
                  score_threshold: float = 0.3, draw: bool = True,
                  recursive: bool = False) -> Dict[str, Any]:
  """Detects objects in every image of `image_dir`; writes and returns detections.json content."""
  if batch_size < 1:
    raise ValueError(f"--batch_size={batch_size} must be >= 1")
  saved_model_dir = resolve_saved_model_dir(model_dir)
  label_map = export.load_label_map(saved_model_dir)
  serve = tf.saved_model.load(saved_model_dir).signatures[export.SERVE_ENCODED]
  displayed = export.applies_exif_orientation(saved_model_dir)
  names = list_images(image_dir, recursive)
  png_names = dict(zip(names, output_png_names(names)))
  tf.io.gfile.makedirs(output_dir)
  result = {"model_dir": saved_model_dir, "score_threshold": score_threshold, "images": [],
            "skipped": []}
  start = time.perf_counter()
  for first in range(0, len(names), batch_size):
    batch_names = names[first:first + batch_size]
    encoded = [fileio.read_bytes(os.path.join(image_dir, name)) for name in batch_names]
    outputs, kept, skipped = _serve_batch(serve, encoded, batch_names)
    for entry in skipped:
      print(f"Skipped {os.path.join(image_dir, entry['file'])}: {entry['reason']}",
            file=sys.stderr, flush=True)
    result["skipped"] += skipped
    encoded = [encoded[i] for i in kept]
    if kept and not displayed:
      outputs = export.outputs_in_displayed_frame(outputs, encoded)
    for i, name in enumerate(batch_names[i] for i in kept):
      detections = image_detections(outputs, i, label_map, score_threshold)
      height, width = (int(v) for v in outputs["image_size"][i])
      result["images"].append({"file": name, "height": height, "width": width,
                               "detections": detections})
      if draw:
        _save_png(draw_image(encoded[i], detections), os.path.join(output_dir, png_names[name]))
    _write_result(result, output_dir)
    done = first + len(batch_names)
    rate = done / max(time.perf_counter() - start, 1e-9)
    print(f"[{done}/{len(names)}] {rate:.1f} images/s", file=sys.stderr, flush=True)
  return result


def _save_png(image: Image.Image, path: str) -> None:
  buffer = io.BytesIO()
  image.save(buffer, format="PNG")
  fileio.write_bytes(path, buffer.getvalue())


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
  parser.add_argument("--recursive", action="store_true",
                      help="also the images in subfolders of --image_dir")
  console.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  try:
    result = run_inference(args.model_dir, args.image_dir, args.output_dir,
                           batch_size=args.batch_size, score_threshold=args.score_threshold,
                           draw=not args.no_draw, recursive=args.recursive)
  except (FileNotFoundError, ValueError) as e:  # the user's paths or flags: no traceback
    print(f"error: {e}", file=sys.stderr)
    return 2
  total = sum(len(r["detections"]) for r in result["images"])
  skipped = result["skipped"]
  print(f"{len(result['images'])} images, {total} detections -> {args.output_dir}" +
        (f"; {len(skipped)} skipped (undecodable): " +
         ", ".join(s["file"] for s in skipped) if skipped else ""))
  return 0 if result["images"] or not skipped else 1


if __name__ == "__main__":
  sys.exit(main())
