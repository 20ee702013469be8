"""data/convert.py: the Beam conversion, bad inputs, statistics, determinism."""
import collections
import filecmp
import glob
import json
import math
import os
import shutil

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data import convert
from data import example_codec as codec
from data import sample_data
from retinanet import coco, layout
from retinanet.dataloader import schema

IN_MEMORY = ["--direct_running_mode=in_memory"]
SIZE = (48, 64)  # (height, width)


def _read_split(split_dir):
  """{image id: parsed Example} and the image ids in file order per shard."""
  examples, order = {}, {}
  for path in sorted(glob.glob(os.path.join(split_dir, "*.gz"))):
    ids = []
    for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
      parsed = schema.parse_example(record.numpy())
      examples[parsed[schema.IMAGE_ID]] = parsed
      ids.append(parsed[schema.IMAGE_ID])
    order[os.path.basename(path)] = ids
  return examples, order


def _load(path):
  with open(path) as f:
    return json.load(f)


def _save(path, data):
  with open(path, "w") as f:
    json.dump(data, f)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
  """A small generated dataset (never modified)."""
  root = str(tmp_path_factory.mktemp("clean"))
  return sample_data.generate_sample_dataset(root, num_train=14, num_val=5, image_size=SIZE,
                                             seed=7)


@pytest.fixture(scope="module")
def bad(clean, tmp_path_factory):
  """The clean dataset plus one of each bad-input case, and what each should do."""
  root = str(tmp_path_factory.mktemp("bad"))
  shutil.copytree(clean.root, root, dirs_exist_ok=True)
  train_json = os.path.join(root, "annotations", "instances_train.json")
  val_json = os.path.join(root, "annotations", "instances_val.json")
  image_dir = os.path.join(root, "images", "train")
  data = _load(train_json)
  first = data["images"][0]
  some_file = os.path.join(image_dir, first["file_name"])

  def add_image(image_id, file_name, num_anns):
    data["images"].append({"id": image_id, "file_name": file_name, "height": SIZE[0],
                           "width": SIZE[1]})
    for k in range(num_anns):
      data["annotations"].append({"id": 10_000 + image_id * 10 + k, "image_id": image_id,
                                  "category_id": 3, "bbox": [1, 1, 5, 5], "area": 25})

  add_image(900, "missing.jpg", 2)
  with open(os.path.join(image_dir, "corrupt.jpg"), "wb") as f:
    f.write(b"\xff\xd8\xff\xe0" + b"\x13" * 300)
  add_image(901, "corrupt.jpg", 1)
  with open(some_file, "rb") as f:
    raw = f.read()
  with open(os.path.join(image_dir, "truncated.img"), "wb") as f:
    f.write(raw[:len(raw) // 2])
  add_image(902, "truncated.img", 1)
  # A valid header and end marker around pixel data that does not decode.
  scrambled = bytearray(raw)
  scrambled[len(raw) // 2:len(raw) // 2 + 16] = b"\xff\x42" * 8  # an unsupported marker
  with open(os.path.join(image_dir, "scrambled.jpg"), "wb") as f:
    f.write(bytes(scrambled))
  add_image(906, "scrambled.jpg", 2)
  Image.new("RGB", (SIZE[1], SIZE[0]), (9, 9, 9)).save(os.path.join(image_dir, "old.bmp"))
  add_image(903, "old.bmp", 3)
  shutil.copy(some_file, os.path.join(image_dir, "negative.bin"))
  add_image(904, "negative.bin", 0)
  # A later duplicate of the first image's id (pointing at another file): skipped.
  data["images"].append({"id": first["id"], "file_name": "negative.bin"})
  # Boxes on image 905 (a copy of a valid file): clipped, degenerate x2, unknown category.
  shutil.copy(some_file, os.path.join(image_dir, "boxes.jpg"))
  add_image(905, "boxes.jpg", 0)
  h, w = SIZE
  data["annotations"] += [
      {"id": 20_001, "image_id": 905, "category_id": 7, "bbox": [-4, 10, 20, 100]},
      {"id": 20_002, "image_id": 905, "category_id": 7, "bbox": [5, 5, 0, 10]},
      {"id": 20_003, "image_id": 905, "category_id": 7, "bbox": [w + 1, 0, 5, 5]},
      {"id": 20_004, "image_id": 905, "category_id": 999, "bbox": [1, 1, 5, 5]},
      {"id": 20_005, "image_id": 905, "category_id": 40, "bbox": [2, 3, 10, 8],
       "iscrowd": 1, "area": 80},
      {"id": 20_006, "image_id": 77_777, "category_id": 3, "bbox": [1, 1, 5, 5]},
  ]
  _save(train_json, data)
  # Val knows a category the train split does not: its annotation is dropped.
  val = _load(val_json)
  val["categories"].append({"id": 50, "name": "star"})
  val["annotations"].append({"id": 30_000, "image_id": val["images"][0]["id"],
                             "category_id": 50, "bbox": [1, 1, 4, 4]})
  _save(val_json, val)
  splits = {"train": (train_json, image_dir),
            "val": (val_json, os.path.join(root, "images", "val"))}
  return splits


@pytest.fixture(scope="module")
def bad_result(bad, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("out"))
  return convert.convert_coco(bad, out, num_shards=3, beam_pipeline_args=IN_MEMORY)


def _clean_counts(clean, split):
  data = _load(clean.annotation_files[split])
  with_boxes = {a["image_id"] for a in data["annotations"]}
  names = {c["id"]: c["name"] for c in data["categories"]}
  return {
      "images": len(data["images"]), "annotations": len(data["annotations"]),
      "crowd": sum(a["iscrowd"] for a in data["annotations"]),
      "negatives": sum(im["id"] not in with_boxes for im in data["images"]),
      "per_class": collections.Counter(names[a["category_id"]] for a in data["annotations"]),
      "ids": {im["id"] for im in data["images"]},
  }


def test_each_bad_input_has_its_documented_outcome(clean, bad_result):
  c = _clean_counts(clean, "train")
  s = bad_result.stats["splits"]["train"]
  # 7 new records (900-906) + 1 duplicate; the clean annotations + 9 + 6 new ones.
  assert s["images_in"] == c["images"] + 8
  assert s["images_skipped"] == {"missing_image": 1, "corrupt_image": 2, "undecodable_image": 1,
                                 "unsupported_format": 1, "duplicate_image_id": 1,
                                 "size_mismatch": 0}
  assert s["images_written"] == c["images"] + 2  # 904 (negative) and 905
  assert s["annotations_in"] == c["annotations"] + 9 + 6
  assert s["annotations_dropped"] == {"degenerate_box": 2, "unknown_category": 1,
                                      "missing_image_id": 1,
                                      "image_skipped": 2 + 1 + 1 + 3 + 2}
  assert s["boxes_written"] == c["annotations"] + 2
  assert s["boxes_clipped"] == 1
  assert s["crowd_boxes"] == c["crowd"] + 1
  assert s["negative_images"] == c["negatives"] + 1
  expected_per_class = c["per_class"] + collections.Counter(square=1, cross=1)
  assert s["boxes_per_class"] == {n: expected_per_class[n] for n in
                                  ("circle", "square", "triangle", "diamond", "cross")}
  assert s["examples"] == s["images_written"]
  assert s["num_shards"] == s["shards_written"] == 3


def test_statistics_reconcile_per_split(bad_result):
  for split, s in bad_result.stats["splits"].items():
    assert s["images_in"] == s["images_written"] + sum(s["images_skipped"].values()), split
    assert s["annotations_in"] == s["boxes_written"] + sum(s["annotations_dropped"].values())
    assert sum(s["boxes_per_class"].values()) == s["boxes_written"]
  assert bad_result.stats == _load(os.path.join(bad_result.output_dir, layout.CONVERSION_REPORT_FILE))


def test_written_examples_match_the_rules(clean, bad_result):
  examples, _ = _read_split(bad_result.split_dirs["train"])
  c = _clean_counts(clean, "train")
  assert set(examples) == c["ids"] | {904, 905}
  stats = bad_result.stats["splits"]["train"]
  assert sum(len(e[schema.LABEL]) for e in examples.values()) == stats["boxes_written"]
  h, w = SIZE
  boxes = examples[905]
  # Clipped [-4, 10, 20, 100] -> x 0..16, y 10..48; then the crowd box.
  np.testing.assert_allclose(boxes[schema.XMIN], [0, 2 / w], rtol=1e-6)
  np.testing.assert_allclose(boxes[schema.YMIN], [10 / h, 3 / h], rtol=1e-6)
  np.testing.assert_allclose(boxes[schema.XMAX], [16 / w, 12 / w], rtol=1e-6)
  np.testing.assert_allclose(boxes[schema.YMAX], [1.0, 11 / h], rtol=1e-6)
  np.testing.assert_array_equal(boxes[schema.CATEGORY_ID], [7, 40])
  np.testing.assert_array_equal(boxes[schema.LABEL], [1, 4])
  np.testing.assert_array_equal(boxes[schema.IS_CROWD], [0, 1])
  assert len(examples[904][schema.LABEL]) == 0
  # The duplicate id kept the first record's file, not "negative.bin".
  first = _load(clean.annotation_files["train"])["images"][0]
  assert examples[first["id"]][schema.FILENAME] == first["file_name"]


def test_bytes_in_examples_are_the_files(bad, bad_result):
  examples, _ = _read_split(bad_result.split_dirs["val"])
  image_dir = bad["val"][1]
  for example in examples.values():
    with open(os.path.join(image_dir, example[schema.FILENAME]), "rb") as f:
      assert example[schema.ENCODED] == f.read()
    assert example[schema.FORMAT] == codec.detect_format(example[schema.ENCODED])


def test_label_map_comes_from_train_and_val_drops_unknown(bad, bad_result):
  label_map = coco.load_label_map(bad_result.label_map_path)
  assert label_map.category_ids == (3, 7, 12, 25, 40)
  assert label_map == bad_result.label_map
  s = bad_result.stats["splits"]["val"]
  assert s["annotations_dropped"]["unknown_category"] == 1
  assert bad_result.stats["label_map_source"] == "train"


def test_shards_are_sorted_and_keyed_by_image_id(bad_result):
  _, order = _read_split(bad_result.split_dirs["train"])
  assert sorted(order) == [convert.shard_name(i, 3) for i in range(3)]
  for name, ids in order.items():
    assert ids == sorted(ids)
    assert all(convert.shard_of(i, 3) == int(name.split("-")[1]) for i in ids)


def test_ground_truth_is_the_original_annotations_of_the_written_images(clean, bad_result):
  from retinanet.evaluation import coco_metrics
  path = convert.ground_truth_path(bad_result.output_dir, "train")
  truth = coco_metrics.load_coco_ground_truth(path)  # valid for pycocotools
  examples, _ = _read_split(bad_result.split_dirs["train"])
  assert sorted(im["id"] for im in truth["images"]) == sorted(examples)
  assert {(im["id"], im["height"], im["width"]) for im in truth["images"]} == {
      (i, e[schema.HEIGHT], e[schema.WIDTH]) for i, e in examples.items()}
  label_map = coco.load_label_map(bad_result.label_map_path)
  assert truth["categories"] == [{"id": c, "name": n}
                                 for c, n in zip(label_map.category_ids, label_map.names)]
  # The clean annotations unchanged (ids, boxes, areas, crowd flags).
  original = {a["id"]: a for a in _load(clean.annotation_files["train"])["annotations"]}
  by_id = {a["id"]: a for a in truth["annotations"]}
  for ann_id, ann in original.items():
    assert {k: by_id[ann_id][k] for k in ("image_id", "category_id", "bbox", "area", "iscrowd")} \
        == {k: ann[k] for k in ("image_id", "category_id", "bbox", "area", "iscrowd")}
  # Image 905: boxes as annotated (not clipped), the degenerate ones too (COCO scores
  # them as misses), area filled from the box; the unknown category 999 is left out.
  assert {a["id"]: a["bbox"] for a in truth["annotations"] if a["image_id"] == 905} == {
      20_001: [-4, 10, 20, 100], 20_002: [5, 5, 0, 10], 20_003: [SIZE[1] + 1, 0, 5, 5],
      20_005: [2, 3, 10, 8]}
  assert by_id[20_001]["area"] == 2000 and by_id[20_005]["iscrowd"] == 1
  # Nothing of the skipped images; counts reconcile with the statistics.
  assert not {a["image_id"] for a in truth["annotations"]} & {900, 901, 902, 903, 77_777}
  s = bad_result.stats["splits"]["train"]
  assert s["ground_truth_images"] == s["images_written"] == len(truth["images"])
  assert s["ground_truth_annotations"] == len(truth["annotations"]) == len(original) + 4
  assert s["ground_truth_file"] == os.path.join("ground_truth", "instances_train.json")
  # Val: the annotation of the category the label map does not know is left out.
  val = coco_metrics.load_coco_ground_truth(convert.ground_truth_path(bad_result.output_dir,
                                                                      "val"))
  assert 30_000 not in {a["id"] for a in val["annotations"]}
  assert not os.path.exists(os.path.join(bad_result.output_dir, "ground_truth", ".parts-train"))


def test_ground_truth_annotation_leaves_out_what_cannot_be_scored():
  """Found by tests/test_data_fuzz.py: a width of 1.8e307 and no area made w * h overflow
  to inf, and writing the ground truth JSON failed with a traceback."""
  label_map = coco.LabelMap((1,), ("a",))
  ann = {"id": 5, "category_id": 1, "bbox": [30, 20, 4, 10]}
  assert convert.ground_truth_annotation(ann, 3, label_map) == {
      "id": 5, "image_id": 3, "category_id": 1, "bbox": [30.0, 20.0, 4.0, 10.0], "area": 40.0,
      "iscrowd": 0}
  assert convert.ground_truth_annotation(dict(ann, area=float("nan")), 3, label_map)["area"] == 40
  for bad in (dict(ann, bbox=[30, 20, 1.797693134862316e307, 10]),
              dict(ann, bbox=[30, 20, float("inf"), 10]), dict(ann, category_id=2)):
    assert convert.ground_truth_annotation(bad, 3, label_map) is None, bad
  # A given finite area is kept, even where the box is huge.
  assert convert.ground_truth_annotation(
      dict(ann, bbox=[30, 20, 1.797693134862316e307, 10], area=7), 3, label_map)["area"] == 7


def test_ground_truth_renumbers_missing_or_repeated_annotation_ids(clean, tmp_path):
  data = _load(clean.annotation_files["val"])
  for ann in data["annotations"]:
    ann.pop("id")
  path = str(tmp_path / "no_ids.json")
  _save(path, data)
  result = convert.convert_coco({"val": (path, clean.splits["val"][1])}, str(tmp_path / "out"),
                                num_shards=2, beam_pipeline_args=IN_MEMORY,
                                label_map_split="val")
  truth = _load(convert.ground_truth_path(result.output_dir, "val"))
  assert sorted(a["id"] for a in truth["annotations"]) == list(
      range(1, len(data["annotations"]) + 1))


def test_output_is_byte_identical_across_runs(bad, tmp_path):
  a = convert.convert_coco(bad, str(tmp_path / "a"), num_shards=2, beam_pipeline_args=IN_MEMORY)
  b = convert.convert_coco(bad, str(tmp_path / "b"), num_shards=2, beam_pipeline_args=IN_MEMORY)
  files = sorted(os.path.relpath(p, a.output_dir)
                 for p in glob.glob(os.path.join(a.output_dir, "**", "*"), recursive=True)
                 if os.path.isfile(p))
  assert len(files) == 2 + 2 + 2 + 2  # 2 shards + ground truth per split, label map, stats
  _, mismatch, errors = filecmp.cmpfiles(a.output_dir, b.output_dir, files, shallow=False)
  assert (mismatch, errors) == ([], [])


def test_multi_processing_output_equals_in_memory_output(bad, tmp_path):
  a = convert.convert_coco(bad, str(tmp_path / "a"), num_shards=2, beam_pipeline_args=IN_MEMORY)
  b = convert.convert_coco(bad, str(tmp_path / "b"), num_shards=2, beam_pipeline_args=[
      "--direct_running_mode=multi_processing", "--direct_num_workers=2"])
  for split in ("train", "val"):
    names = sorted(os.listdir(a.split_dirs[split]))
    _, mismatch, errors = filecmp.cmpfiles(a.split_dirs[split], b.split_dirs[split], names,
                                           shallow=False)
    assert (mismatch, errors) == ([], [])


def test_given_pipeline_is_run_and_more_shards_than_images_still_written(clean, tmp_path):
  splits = {"val": clean.splits["val"]}
  pipeline = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"] + IN_MEMORY))
  result = convert.convert_coco(splits, str(tmp_path / "o"), num_shards=8,
                                beam_pipeline=pipeline, label_map_split="val")
  assert sorted(os.listdir(result.split_dirs["val"])) == [convert.shard_name(i, 8)
                                                          for i in range(8)]
  examples, _ = _read_split(result.split_dirs["val"])
  assert len(examples) == 5 == result.stats["splits"]["val"]["images_written"]


def test_given_label_map_is_used(clean, tmp_path):
  label_map = coco.LabelMap((3, 12), ("circle", "triangle"))
  result = convert.convert_coco({"val": clean.splits["val"]}, str(tmp_path / "o"), num_shards=1,
                                beam_pipeline_args=IN_MEMORY, label_map=label_map)
  s = result.stats["splits"]["val"]
  c = _clean_counts(clean, "val")
  assert result.stats["label_map_source"] == "given"
  assert s["boxes_per_class"] == {"circle": c["per_class"]["circle"],
                                  "triangle": c["per_class"]["triangle"]}
  assert s["annotations_dropped"]["unknown_category"] == (
      c["annotations"] - c["per_class"]["circle"] - c["per_class"]["triangle"])


def test_bad_arguments_and_reused_output_dir_are_refused(clean, tmp_path):
  with pytest.raises(ValueError, match="not one of the splits"):
    convert.convert_coco({"val": clean.splits["val"]}, str(tmp_path / "x"),
                         beam_pipeline_args=IN_MEMORY)
  with pytest.raises(ValueError, match="either beam_pipeline or beam_pipeline_args"):
    convert.convert_coco(clean.splits, str(tmp_path / "x"), beam_pipeline=beam.Pipeline(),
                         beam_pipeline_args=IN_MEMORY)
  with pytest.raises(ValueError, match="split name"):
    convert.convert_coco({"tr/ain": clean.splits["train"]}, str(tmp_path / "x"))
  out = tmp_path / "used"
  (out / "Split-val").mkdir(parents=True)
  (out / "Split-val" / "old.gz").write_bytes(b"x")
  with pytest.raises(FileExistsError, match="Split-val"):
    convert.convert_coco({"val": clean.splits["val"]}, str(out), label_map_split="val",
                         beam_pipeline_args=IN_MEMORY)


def test_malformed_json_fails_before_the_pipeline_naming_the_file(clean, tmp_path):
  path = tmp_path / "broken.json"
  data = _load(clean.annotation_files["val"])
  del data["annotations"][0]["bbox"]
  _save(str(path), data)
  with pytest.raises(coco.CocoFormatError, match=r"broken.json: annotation 0 .*has no \"bbox\""):
    convert.convert_coco({"val": (str(path), clean.image_dirs["val"])}, str(tmp_path / "o"),
                         label_map_split="val", beam_pipeline_args=IN_MEMORY)
  assert not (tmp_path / "o").exists()


def test_estimate_num_shards_from_sampled_sizes(clean):
  data = _load(clean.annotation_files["train"])
  sizes = [os.path.getsize(os.path.join(clean.image_dirs["train"], im["file_name"]))
           for im in data["images"]]
  total = sum(sizes)
  images = data["images"] + [{"id": 10**6, "file_name": "missing.jpg"}]
  mean_total = total / len(sizes) * len(images)
  for target in (total * 10, total / 2.5, total / 7):
    assert convert.estimate_num_shards(images, clean.image_dirs["train"], target) == max(
        1, math.ceil(mean_total / target))
  assert convert.estimate_num_shards([], clean.image_dirs["train"]) == 1


def test_shard_of_is_stable_and_spreads_ids():
  assert [convert.shard_of(i, 4) for i in range(1, 9)] == [
      convert.shard_of(i, 4) for i in range(1, 9)]
  counts = collections.Counter(convert.shard_of(i, 4) for i in range(4000))
  assert set(counts) == {0, 1, 2, 3} and min(counts.values()) > 900
  # md5 of the decimal id: independent of PYTHONHASHSEED and process.
  assert convert.shard_of(1, 2**32) == int.from_bytes(
      __import__("hashlib").md5(b"1").digest()[:8], "big") % 2**32


def test_pipeline_args_defaults():
  defaults = list(convert.DEFAULT_DIRECT_ARGS)
  assert convert.pipeline_args_with_defaults(None) == ["--runner=FnApiRunner"] + defaults
  assert convert.pipeline_args_with_defaults(IN_MEMORY) == IN_MEMORY + ["--runner=FnApiRunner"]
  threads = ["--direct_running_mode=multi_threading", "--direct_num_workers=2"]
  assert convert.pipeline_args_with_defaults(threads) == threads + ["--runner=FnApiRunner"]
  dataflow = ["--runner=DataflowRunner", "--project=p", "--region=r", "--temp_location=gs://b/t"]
  assert convert.pipeline_args_with_defaults(dataflow) == dataflow
  assert convert.pipeline_args_with_defaults(["--runner", "DirectRunner"]) == [
      "--runner", "DirectRunner"]
  assert convert.pipeline_args_with_defaults(["--direct_num_workers=4"]) == [
      "--direct_num_workers=4", "--runner=FnApiRunner"] + defaults
  # Large data: a worker process per core, unless a mode is given.
  large = convert.MULTI_PROCESSING_MIN_BYTES
  assert convert.pipeline_args_with_defaults(None, large) == [
      "--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=0"]
  assert convert.pipeline_args_with_defaults(None, large - 1) == [
      "--runner=FnApiRunner"] + defaults
  assert convert.pipeline_args_with_defaults(IN_MEMORY, large) == IN_MEMORY + [
      "--runner=FnApiRunner"]


def test_annotation_bytes_sums_file_sizes(clean, tmp_path):
  paths = [clean.annotation_files["train"], clean.annotation_files["val"]]
  assert convert.annotation_bytes(paths + [str(tmp_path / "missing.json")]) == sum(
      os.path.getsize(p) for p in paths)


def test_cli_converts(clean, tmp_path):
  out = str(tmp_path / "cli")
  ann, images = clean.splits["val"]
  assert convert.main(["--split", f"val,{ann},{images}", "--output_dir", out,
                       "--label_map_split", "val", "--num_shards", "1"] + IN_MEMORY) == 0
  assert os.listdir(os.path.join(out, "Split-val")) == [convert.shard_name(0, 1)]


def test_ordered_map_keeps_input_order_and_bounds_in_flight_work():
  import concurrent.futures
  import threading
  import time
  delays = np.random.default_rng(0).uniform(0, 0.01, 40)
  lock, state = threading.Lock(), {"now": 0, "max": 0}

  def work(i):
    with lock:
      state["now"] += 1
      state["max"] = max(state["max"], state["now"])
    time.sleep(delays[i])
    with lock:
      state["now"] -= 1
    return i * i

  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    results = []
    for r in convert._ordered_map(pool, work, list(range(40)), window=6):  # pylint: disable=protected-access
      results.append(r)
  assert results == [i * i for i in range(40)]
  assert 2 <= state["max"] <= 4


def test_one_reader_thread_writes_the_same_bytes(bad, tmp_path):
  """The read-ahead threads change nothing in the output."""
  slim = coco.read_coco_slim(bad["train"][0])
  label_map = coco.LabelMap.from_categories(slim.categories)
  outs = {}
  for threads in (1, 4):
    root = tmp_path / f"t{threads}"
    out = root / "Split-train"
    out.mkdir(parents=True)
    counters = convert.write_shard_inputs(slim, "train", str(root), 2)
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"] + IN_MEMORY)) as p:
      _ = p | convert.CocoToTFRecords(
          split="train", annotations_path=bad["train"][0], image_dir=bad["train"][1],
          output_dir=str(root), label_map=label_map, num_shards=2, input_counters=counters,
          read_threads=threads)
    outs[threads] = {n: (out / n).read_bytes() for n in sorted(os.listdir(out))}
  assert list(outs[1]) == [convert.shard_name(i, 2) for i in range(2)]
  assert outs[1] == outs[4]
