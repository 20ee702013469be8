"""data/sample_data.py: determinism and the properties the dataset promises."""
import filecmp
import json
import os

import numpy as np
import pytest
from PIL import Image

from data import example_codec as codec
from data import sample_data
from retinanet import coco

SIZE = (64, 80)  # (height, width)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("shapes"))
  return sample_data.generate_sample_dataset(root, num_train=80, num_val=12, image_size=SIZE,
                                             seed=3)


def _files(root):
  out = []
  for dirpath, _, names in os.walk(root):
    out += [os.path.relpath(os.path.join(dirpath, n), root) for n in names]
  return sorted(out)


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
  a = sample_data.generate_sample_dataset(str(tmp_path / "a"), 6, 2, SIZE, seed=11)
  b = sample_data.generate_sample_dataset(str(tmp_path / "b"), 6, 2, SIZE, seed=11)
  c = sample_data.generate_sample_dataset(str(tmp_path / "c"), 6, 2, SIZE, seed=12)
  names = _files(a.root)
  assert names == _files(b.root) and len(names) == 6 + 2 + 2
  match, mismatch, errors = filecmp.cmpfiles(a.root, b.root, names, shallow=False)
  assert (mismatch, errors) == ([], [])
  with open(a.annotation_files["train"], "rb") as fa, open(c.annotation_files["train"],
                                                           "rb") as fc:
    assert fa.read() != fc.read()


def test_files_validate_and_ids_are_sparse(dataset):
  for split, (ann_path, _) in dataset.splits.items():
    data = coco.read_coco_json(ann_path)
    label_map = coco.label_map_from_coco(data)
    assert label_map.category_ids == (3, 7, 12, 25, 40)
    assert label_map.category_ids != tuple(range(1, 6))
    assert len({im["id"] for im in data["images"]}) == len(data["images"])
    assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])
    assert {a["category_id"] for a in data["annotations"]} <= set(label_map.category_ids)


def test_formats_sizes_and_boxes(dataset):
  data = coco.read_coco_json(dataset.annotation_files["train"])
  formats = set()
  for image in data["images"]:
    with open(os.path.join(dataset.image_dirs["train"], image["file_name"]), "rb") as f:
      raw = f.read()
    fmt, height, width = codec.read_image_header(raw)
    formats.add(fmt)
    assert image["file_name"].endswith(".jpg" if fmt == "jpeg" else ".png")
    assert (height, width) == (image["height"], image["width"]) == SIZE
  assert formats == {"jpeg", "png"}
  height, width = SIZE
  boxes = np.array([a["bbox"] for a in data["annotations"]])
  assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
  assert (boxes[:, 0] + boxes[:, 2] <= width).all()
  assert (boxes[:, 1] + boxes[:, 3] <= height).all()
  single = boxes[[a["iscrowd"] == 0 for a in data["annotations"]]]
  assert single[:, 2:].min() >= sample_data.MIN_OBJECT_SIDE
  assert single[:, 2].max() <= 0.6 * width and single[:, 3].max() <= 0.6 * height
  aspect = single[:, 2] / single[:, 3]
  assert aspect.min() < 0.8 and aspect.max() > 1.25


def test_crowd_empty_overlap_and_classes_present(dataset):
  data = coco.read_coco_json(dataset.annotation_files["train"])
  anns_by_image = {im["id"]: [] for im in data["images"]}
  for a in data["annotations"]:
    anns_by_image[a["image_id"]].append(a)
  empty = sum(1 for anns in anns_by_image.values() if not anns)
  assert 1 <= empty <= 0.15 * len(data["images"])
  assert any(a["iscrowd"] == 1 for a in data["annotations"])
  assert {a["category_id"] for a in data["annotations"]} == {3, 7, 12, 25, 40}
  assert max(len(v) for v in anns_by_image.values()) >= 4

  def overlaps(a, b):
    return (min(a[0] + a[2], b[0] + b[2]) > max(a[0], b[0]) and
            min(a[1] + a[3], b[1] + b[3]) > max(a[1], b[1]))
  assert any(overlaps(a["bbox"], b["bbox"])
             for anns in anns_by_image.values() for i, a in enumerate(anns) for b in anns[i + 1:])


def test_objects_carry_their_class_colour(dataset):
  """The centre pixel of most single objects is close to the class's base colour."""
  data = coco.read_coco_json(dataset.annotation_files["train"])
  base = {cid: np.array(rgb) for cid, _, rgb in sample_data.CLASSES}
  files = {im["id"]: im["file_name"] for im in data["images"]}
  distances = []
  for a in data["annotations"]:
    if a["iscrowd"]:
      continue
    x, y, w, h = a["bbox"]
    pixels = np.asarray(Image.open(os.path.join(dataset.image_dirs["train"],
                                                files[a["image_id"]])).convert("RGB"))
    centre = pixels[int(y + (h - 1) / 2), int(x + (w - 1) / 2)].astype(float)
    distances.append(np.linalg.norm(centre - base[a["category_id"]]))
  assert np.median(distances) < 60


def test_cli_writes_the_dataset(tmp_path):
  out = str(tmp_path / "cli")
  assert sample_data.main(["--output_dir", out, "--num_train", "3", "--num_val", "1",
                           "--height", "40", "--width", "48", "--seed", "5"]) == 0
  with open(os.path.join(out, "annotations", "instances_val.json")) as f:
    assert len(json.load(f)["images"]) == 1
  assert len(os.listdir(os.path.join(out, "images", "train"))) == 3


def test_too_small_images_are_rejected(tmp_path):
  with pytest.raises(ValueError, match="too small"):
    sample_data.generate_sample_dataset(str(tmp_path), 1, 1, image_size=(20, 64))


def test_custom_categories_change_ids_and_class_count(tmp_path):
  from data import sample_data as sd
  assert sd.main(["--output_dir", str(tmp_path), "--num_train", "6", "--num_val", "2",
                  "--height", "64", "--width", "64", "--categories",
                  "205:square,101:circle,333:triangle"]) == 0
  data = json.load(open(tmp_path / "annotations" / "instances_train.json"))
  assert [(c["id"], c["name"]) for c in data["categories"]] == [
      (101, "circle"), (205, "square"), (333, "triangle")]
  assert {a["category_id"] for a in data["annotations"]} <= {101, 205, 333}
  with pytest.raises(ValueError, match="must name shapes"):
    sd.custom_categories({1: "hexagon"})
  with pytest.raises(ValueError, match="is not ID:SHAPE"):
    sd.parse_categories("circle")
