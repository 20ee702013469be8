"""Property-based fuzzing of the COCO reader and conversion (hypothesis, 1,000 cases).

Random structural mutations of a valid annotation file (wrong types, missing
keys, NaN / negative / huge numbers, non-UTF-8 names, duplicated records, deep
nesting) must end in exactly one of two ways: a clean conversion whose
statistics reconcile and account for every image record of the file, or one
`CocoFormatError` naming the file (and the record, when one is at fault).
Never another exception (a traceback), a hang, or a silently lost image. The
conversion runs `convert.convert_coco(..., in_process=True)`: the Beam job's
steps as a plain loop, so a case takes milliseconds.
"""
import copy
import json
import os
import shutil
import tempfile

import hypothesis
from hypothesis import strategies as st
import numpy as np
import pytest
from PIL import Image

from data import convert
from retinanet import coco

NUM_CASES = int(os.environ.get("FUZZ_CASES", "1000"))
BASE = {
    "info": {"description": "fuzz", "year": 2026},
    "licenses": [{"id": 1, "name": "none"}],
    "images": [{"id": i, "file_name": f"{i}.png", "height": 24, "width": 32} for i in (1, 2, 3)],
    "annotations": [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 8], "area": 80,
         "iscrowd": 0, "segmentation": [[2, 3, 12, 3, 12, 11]]},
        {"id": 11, "image_id": 1, "category_id": 2, "bbox": [0, 0, 32, 24], "area": 768,
         "iscrowd": 1, "segmentation": {"counts": [0, 768], "size": [24, 32]}},
        {"id": 12, "image_id": 2, "category_id": 2, "bbox": [5.5, 1.25, 4, 4], "area": 16,
         "iscrowd": 0, "segmentation": []},
        {"id": 13, "image_id": 3, "category_id": 1, "bbox": [30, 20, 10, 10], "iscrowd": 0},
    ],
    "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}],
}

JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**80, max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
    st.lists(st.integers(min_value=-5, max_value=50), max_size=5),
    st.dictionaries(st.sampled_from(["id", "name", "bbox", "x"]), st.integers(), max_size=2))


def _paths(tree):
  """Every path (tuple of keys / indices) into a JSON tree, the root excluded."""
  stack = [((), tree)]
  while stack:
    prefix, node = stack.pop()
    items = node.items() if isinstance(node, dict) else (
        enumerate(node) if isinstance(node, list) else [])
    for key, child in items:
      yield prefix + (key,)
      stack.append((prefix + (key,), child))


def _parent(tree, path):
  for key in path[:-1]:
    tree = tree[key]
  return tree


@st.composite
def mutated_files(draw):
  """(bytes of a mutated file, image records it holds or None, the mutations applied).

  Deep nesting is spliced into the text (a placeholder replaced by n brackets
  around the value), so neither the generator nor json.dumps recurses.
  """
  data = copy.deepcopy(BASE)
  applied, nests = [], []
  for _ in range(draw(st.integers(min_value=1, max_value=3))):
    paths = list(_paths(data))
    if not paths:
      break
    path = draw(st.sampled_from(paths))
    parent, key = _parent(data, path), path[-1]
    op = draw(st.sampled_from(["delete", "replace", "replace", "duplicate", "nest"]))
    if op == "delete":
      del parent[key]
    elif op == "replace":
      parent[key] = draw(JSON_VALUES)
    elif op == "duplicate" and isinstance(parent, list):
      parent.append(copy.deepcopy(parent[key]))
    elif op == "nest":
      placeholder = f"__nest{len(nests)}__"
      nests.append((placeholder, json.dumps(parent[key], allow_nan=True),
                    draw(st.integers(min_value=1, max_value=5000))))
      parent[key] = placeholder
    applied.append((op, path))
  images = data.get("images") if isinstance(data, dict) else None
  expected_images = len(images) if isinstance(images, list) else None
  raw = json.dumps(data, allow_nan=True)
  for placeholder, value, depth in nests:
    raw = raw.replace(json.dumps(placeholder), "[" * depth + value + "]" * depth)
  raw = raw.encode()
  if draw(st.integers(min_value=0, max_value=9)) == 0:  # a name that is not UTF-8
    raw = raw.replace(b'"circle"', b'"\xff\xfecircle"', 1)
    applied.append(("non-utf8", "circle"))
  return raw, expected_images, applied


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("images")
  rng = np.random.RandomState(0)
  for i in (1, 2, 3):
    Image.fromarray(rng.randint(0, 255, (24, 32, 3)).astype(np.uint8)).save(
        directory / f"{i}.png")
  return str(directory)


@pytest.mark.timeout(1200)
def test_mutated_annotation_files_convert_cleanly_or_fail_with_one_clean_error(image_dir):
  outcomes = {"converted": 0, "rejected": 0}

  @hypothesis.settings(max_examples=NUM_CASES, deadline=None, database=None,
                       suppress_health_check=list(hypothesis.HealthCheck))
  @hypothesis.given(mutated_files())
  def check(case):
    raw, expected_images, applied = case
    work = tempfile.mkdtemp()
    try:
      path = os.path.join(work, "instances_train.json")
      with open(path, "wb") as f:
        f.write(raw)
      try:
        result = convert.convert_coco({"train": (path, image_dir)}, os.path.join(work, "out"),
                                      num_shards=2, in_process=True)
      except coco.CocoFormatError as e:
        message = str(e)
        assert message.startswith(path) and "\n" not in message, (applied, message)
        outcomes["rejected"] += 1
        return
      s = result.stats["splits"]["train"]  # summarize_split checked that the counts reconcile
      assert s["images_in"] == expected_images, applied
      assert s["images_written"] + sum(s["images_skipped"].values()) == s["images_in"]
      assert s["ground_truth_images"] == s["images_written"]
      outcomes["converted"] += 1
    finally:
      shutil.rmtree(work, ignore_errors=True)

  check()  # pylint: disable=no-value-for-parameter
  assert sum(outcomes.values()) >= NUM_CASES
  # Both outcomes are exercised: many mutations are harmless (extra keys, other numbers).
  assert outcomes["converted"] > 50 and outcomes["rejected"] > 50, outcomes
