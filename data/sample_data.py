"""A small deterministic COCO-format dataset of coloured shapes.

It stands in for COCO in tests, demos and the end-to-end pipeline: five
classes with sparse, non-contiguous category ids, each with its own colour
tendency (plus noise) on a noisy, blotchy background, sized from ~16 px to
60% of the image with varied aspect ratios and some overlap, crowd regions
(iscrowd=1 around a cluster of small shapes), ~5% empty images, and a mix of
JPEG and PNG files. Everything comes from numpy's seeded generator (one
stream per image), so the same arguments give byte-identical files.

    python -m data.sample_data --output_dir /tmp/shapes --num_train 400 --num_val 100

writes <output_dir>/annotations/instances_{train,val}.json and
<output_dir>/images/{train,val}/<id>.{jpg,png}.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import io
import json
import math
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from retinanet import console

# (category id, name, base RGB colour); ids are deliberately sparse.
CLASSES: Tuple[Tuple[int, str, Tuple[int, int, int]], ...] = (
    (3, "circle", (215, 55, 45)),
    (7, "square", (45, 170, 65)),
    (12, "triangle", (55, 85, 220)),
    (25, "diamond", (230, 195, 35)),
    (40, "cross", (165, 55, 200)),
)
SPLIT_IMAGE_ID_BASE = {"train": 1, "val": 1_000_001}
EMPTY_IMAGE_PROBABILITY = 0.05
CROWD_PROBABILITY = 0.12
PNG_PROBABILITY = 0.25
MIN_OBJECT_SIDE = 16
MAX_OBJECT_FRACTION = 0.6
MAX_OBJECTS = 6
# Two objects may overlap by at most this fraction of the smaller box.
MAX_OVERLAP_OF_SMALLER = 0.4
JPEG_QUALITY = 90
_SPLIT_STREAM = {"train": 0, "val": 1}


@dataclasses.dataclass(frozen=True)
class SampleDataset:
  """Paths of a generated dataset; `splits` is what data.convert expects."""
  root: str
  annotation_files: Dict[str, str]
  image_dirs: Dict[str, str]

  @property
  def splits(self) -> Dict[str, Tuple[str, str]]:
    return {s: (self.annotation_files[s], self.image_dirs[s]) for s in self.annotation_files}


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """Low-frequency colour blotches + pixel noise + a few thin grey lines."""
  base = rng.uniform(60, 190, size=3)
  grid = rng.normal(0, 35, size=(rng.integers(3, 9), rng.integers(3, 9), 3)) + base
  grid = np.clip(grid, 0, 255).astype(np.uint8)
  blotches = np.asarray(Image.fromarray(grid).resize((width, height), Image.BILINEAR),
                        np.float32)
  noise = rng.normal(0, 10, size=(height, width, 1)) + rng.normal(0, 4, size=(height, width, 3))
  image = Image.fromarray(np.clip(blotches + noise, 0, 255).astype(np.uint8))
  draw = ImageDraw.Draw(image)
  for _ in range(rng.integers(0, 5)):
    xy = [float(v) for v in rng.uniform(0, 1, 4) * (width, height, width, height)]
    grey = int(rng.integers(40, 220))
    draw.line(xy, fill=(grey, grey, grey), width=int(rng.integers(1, 4)))
  return np.asarray(image)


def _overlap_of_smaller(a: Sequence[float], b: Sequence[float]) -> float:
  """Intersection area over the smaller box's area; boxes are [x, y, w, h]."""
  iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
  ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
  if iw <= 0 or ih <= 0:
    return 0.0
  return iw * ih / min(a[2] * a[3], b[2] * b[3])


def _shape_polygon(name: str, x: int, y: int, w: int, h: int) -> List[Tuple[float, float]]:
  """Outline of a shape filling the pixel box [x, x + w) x [y, y + h)."""
  x1, y1 = x + w - 1, y + h - 1
  cx, cy = x + (w - 1) / 2, y + (h - 1) / 2
  if name == "circle":
    t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    return [(cx + (w - 1) / 2 * math.cos(a), cy + (h - 1) / 2 * math.sin(a)) for a in t]
  if name == "square":
    return [(x, y), (x1, y), (x1, y1), (x, y1)]
  if name == "triangle":
    return [(x, y1), (x1, y1), (cx, y)]
  if name == "diamond":
    return [(cx, y), (x1, cy), (cx, y1), (x, cy)]
  if name == "cross":
    tx, ty = (w - 1) / 6, (h - 1) / 6
    return [(cx - tx, y), (cx + tx, y), (cx + tx, cy - ty), (x1, cy - ty), (x1, cy + ty),
            (cx + tx, cy + ty), (cx + tx, y1), (cx - tx, y1), (cx - tx, cy + ty), (x, cy + ty),
            (x, cy - ty), (cx - tx, cy - ty)]
  raise ValueError(f"unknown shape {name!r}; known: {[c[1] for c in CLASSES]}")


def _polygon_area(points: Sequence[Tuple[float, float]]) -> float:
  xs = np.array([p[0] for p in points])
  ys = np.array([p[1] for p in points])
  return float(abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))) / 2)


Classes = Sequence[Tuple[int, str, Tuple[int, int, int]]]


def custom_categories(names_by_id: Dict[int, str]) -> Tuple[Tuple[int, str, Tuple[int, int, int]], ...]:
  """Rows like CLASSES for other category ids, e.g. {101: "circle", 205: "square"}.

  Each name must be one of the shapes of CLASSES (it keeps that shape's colour);
  used to make a dataset with other (sparse) ids and another class count.
  """
  colours = {name: colour for _, name, colour in CLASSES}
  unknown = [n for n in names_by_id.values() if n not in colours]
  if unknown or not names_by_id:
    raise ValueError(f"categories must name shapes of {sorted(colours)}, got {unknown or 'none'}")
  return tuple((int(cid), name, colours[name]) for cid, name in sorted(names_by_id.items()))


def _colour(rng: np.random.Generator, classes: Classes, class_index: int) -> Tuple[int, int, int]:
  rgb = np.array(classes[class_index][2], np.float64) + rng.normal(0, 28, 3)
  return tuple(int(v) for v in np.clip(rgb, 0, 255))


def _place(rng: np.random.Generator, w: int, h: int, height: int, width: int,
           taken: List[List[float]]) -> Optional[List[float]]:
  """A box of size w x h inside the image overlapping `taken` only a little."""
  for _ in range(30):
    x = int(rng.integers(0, width - w + 1))
    y = int(rng.integers(0, height - h + 1))
    box = [x, y, w, h]
    if all(_overlap_of_smaller(box, t) <= MAX_OVERLAP_OF_SMALLER for t in taken):
      return box
  return None


def _crowd(rng: np.random.Generator, height: int, width: int, num_classes: int
           ) -> Tuple[int, List[List[int]]]:
  """A cluster of 4-8 small shapes of one class: (class index, member boxes)."""
  cls = int(rng.integers(num_classes))
  side = int(min(height, width) * rng.uniform(0.25, 0.4))
  ox = int(rng.integers(0, width - side + 1))
  oy = int(rng.integers(0, height - side + 1))
  members: List[List[int]] = []
  for _ in range(int(rng.integers(4, 9))):
    s = int(rng.integers(max(6, side // 8), max(7, side // 4)))
    box = _place(rng, s, s, side, side, members)
    if box is not None:
      members.append(box)
  return cls, [[ox + b[0], oy + b[1], b[2], b[3]] for b in members]


def _objects(rng: np.random.Generator, height: int, width: int,
             num_classes: int) -> List[Dict[str, Any]]:
  """The objects of one image: dicts with class, box, crowd flag, members."""
  if rng.uniform() < EMPTY_IMAGE_PROBABILITY:
    return []
  objects: List[Dict[str, Any]] = []
  taken: List[List[float]] = []
  if rng.uniform() < CROWD_PROBABILITY:
    cls, members = _crowd(rng, height, width, num_classes)
    if members:
      x0 = min(m[0] for m in members)
      y0 = min(m[1] for m in members)
      x1 = max(m[0] + m[2] for m in members)
      y1 = max(m[1] + m[3] for m in members)
      objects.append({"class": cls, "box": [x0, y0, x1 - x0, y1 - y0], "crowd": 1,
                      "members": members})
      taken.append([x0, y0, x1 - x0, y1 - y0])
  max_side = MAX_OBJECT_FRACTION * min(height, width)
  min_side = min(MIN_OBJECT_SIDE, max_side)
  for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
    cls = int(rng.integers(num_classes))
    size = math.exp(rng.uniform(math.log(min_side), math.log(max_side)))
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    w = int(np.clip(round(size * math.sqrt(aspect)), min_side, MAX_OBJECT_FRACTION * width))
    h = int(np.clip(round(size / math.sqrt(aspect)), min_side, MAX_OBJECT_FRACTION * height))
    box = _place(rng, w, h, height, width, taken)
    if box is not None:
      objects.append({"class": cls, "box": box, "crowd": 0, "members": []})
      taken.append(box)
  return objects


def render_image(rng: np.random.Generator, height: int, width: int, classes: Classes = CLASSES
                 ) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
  """Pixels (H, W, 3) uint8 and objects; larger shapes are drawn first."""
  objects = _objects(rng, height, width, len(classes))
  image = Image.fromarray(_background(rng, height, width))
  draw = ImageDraw.Draw(image)
  for obj in sorted(objects, key=lambda o: -o["box"][2] * o["box"][3]):
    name = classes[obj["class"]][1]
    for x, y, w, h in obj["members"] or [obj["box"]]:
      draw.polygon(_shape_polygon(name, x, y, w, h), fill=_colour(rng, classes, obj["class"]))
  return np.asarray(image), objects


def _encode(pixels: np.ndarray, fmt: str) -> bytes:
  buffer = io.BytesIO()
  if fmt == "png":
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=6)
  else:
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
  return buffer.getvalue()


def _annotation(ann_id: int, image_id: int, obj: Dict[str, Any],
                classes: Classes = CLASSES) -> Dict[str, Any]:
  category_id, name, _ = classes[obj["class"]]
  x, y, w, h = obj["box"]
  if obj["crowd"]:
    polygon = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    area = float(w * h)
  else:
    polygon = _shape_polygon(name, x, y, w, h)
    area = _polygon_area(polygon)
  return {
      "id": ann_id, "image_id": image_id, "category_id": category_id,
      "bbox": [float(x), float(y), float(w), float(h)], "area": round(area, 2),
      "iscrowd": obj["crowd"],
      "segmentation": [[round(float(v), 2) for p in polygon for v in p]],
  }


def generate_split(output_dir: str, split: str, num_images: int, image_size: Tuple[int, int],
                   seed: int, classes: Classes = CLASSES) -> Tuple[str, str]:
  """Writes one split; returns (annotations json path, image directory)."""
  if split not in SPLIT_IMAGE_ID_BASE:
    raise ValueError(f"split must be one of {sorted(SPLIT_IMAGE_ID_BASE)}, got {split!r}")
  height, width = image_size
  if min(height, width) < 2 * MIN_OBJECT_SIDE:
    raise ValueError(f"image_size {image_size} is too small: each side must be >= "
                     f"{2 * MIN_OBJECT_SIDE} px")
  image_dir = os.path.join(output_dir, "images", split)
  ann_dir = os.path.join(output_dir, "annotations")
  os.makedirs(image_dir, exist_ok=True)
  os.makedirs(ann_dir, exist_ok=True)

  def write_image(i: int) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    rng = np.random.default_rng([seed, _SPLIT_STREAM[split], i])  # one stream per image
    image_id = SPLIT_IMAGE_ID_BASE[split] + i
    fmt = "png" if rng.uniform() < PNG_PROBABILITY else "jpeg"
    pixels, objects = render_image(rng, height, width, classes)
    file_name = f"{image_id:012d}.{'png' if fmt == 'png' else 'jpg'}"
    with open(os.path.join(image_dir, file_name), "wb") as f:
      f.write(_encode(pixels, fmt))
    return {"id": image_id, "file_name": file_name, "height": height, "width": width}, objects

  # Threads: numpy's generators and PIL's encoders release the GIL for the bulk of the work
  # of each image; map keeps the image order, so the files are byte-identical.
  images, annotations = [], []
  with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
    for image, objects in pool.map(write_image, range(num_images)):
      images.append(image)
      for obj in objects:
        annotations.append(_annotation(len(annotations) + 1, image["id"], obj, classes))
  coco = {
      "info": {"description": f"shapes sample dataset ({split}), seed {seed}", "version": "1.0"},
      "licenses": [],
      "images": images,
      "annotations": annotations,
      "categories": [{"id": c, "name": n, "supercategory": "shape"} for c, n, _ in classes],
  }
  ann_path = os.path.join(ann_dir, f"instances_{split}.json")
  with open(ann_path, "w") as f:
    json.dump(coco, f, sort_keys=True, separators=(",", ":"))
  return ann_path, image_dir


def generate_sample_dataset(output_dir: str, num_train: int = 400, num_val: int = 100,
                            image_size: Tuple[int, int] = (256, 256), seed: int = 0,
                            categories: Classes = CLASSES) -> SampleDataset:
  """Writes the train and val splits (image_size is (height, width)).

  `categories` (see `custom_categories`) picks other category ids / fewer classes.
  """
  if num_train < 0 or num_val < 0:
    raise ValueError(f"num_train and num_val must be >= 0, got {num_train}, {num_val}")
  annotation_files, image_dirs = {}, {}
  for split, count in (("train", num_train), ("val", num_val)):
    annotation_files[split], image_dirs[split] = generate_split(
        output_dir, split, count, tuple(image_size), seed, categories)
  return SampleDataset(output_dir, annotation_files, image_dirs)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--output_dir", required=True)
  parser.add_argument("--num_train", type=int, default=400)
  parser.add_argument("--num_val", type=int, default=100)
  parser.add_argument("--height", type=int, default=256)
  parser.add_argument("--width", type=int, default=256)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--categories", default="",
                      help="Other category ids and shapes, e.g. 101:circle,205:square "
                           "(default: the 5 built-in classes with ids 3,7,12,25,40).")
  console.add_verbose_flag(parser)
  return parser.parse_args(argv)


def parse_categories(text: str) -> Classes:
  """'101:circle,205:square' -> custom_categories rows; '' -> CLASSES."""
  if not text:
    return CLASSES
  names = {}
  for item in text.split(","):
    cid, sep, name = item.partition(":")
    if not sep or not cid.strip().isdigit():
      raise ValueError(f"--categories item {item!r} is not ID:SHAPE")
    names[int(cid)] = name.strip()
  return custom_categories(names)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  dataset = generate_sample_dataset(args.output_dir, args.num_train, args.num_val,
                                    (args.height, args.width), args.seed,
                                    parse_categories(args.categories))
  for split, (ann, images) in dataset.splits.items():
    print(f"{split}: {ann} ({images})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
