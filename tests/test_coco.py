"""retinanet/coco.py: validation errors and the label map."""
import json

import pytest

from retinanet import coco
from retinanet.coco import CocoFormatError, LabelMap


def _coco(**overrides):
  data = {
      "images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 6}],
      "annotations": [{"id": 5, "image_id": 1, "category_id": 7, "bbox": [1, 1, 2, 2]}],
      "categories": [{"id": 7, "name": "cat"}, {"id": 2, "name": "dog"}],
  }
  data.update(overrides)
  return data


def _write(tmp_path, data, name="instances.json"):
  path = tmp_path / name
  path.write_text(data if isinstance(data, str) else json.dumps(data))
  return str(path)


def test_label_map_sorts_sparse_ids_and_looks_up_both_ways():
  lm = LabelMap.from_categories([{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"},
                                 {"id": 13, "name": "stop sign"}])
  assert lm.category_ids == (1, 13, 90)
  assert lm.names == ("person", "stop sign", "toothbrush")
  assert [lm.index_of(c) for c in (1, 13, 90)] == [0, 1, 2]
  assert [lm.category_id_of(i) for i in range(3)] == [1, 13, 90]
  assert lm.name_of(2) == "toothbrush"
  assert lm.index_of_name("stop sign") == 1
  assert lm.num_classes == 3
  with pytest.raises(KeyError, match="category id 2 is not in the label map"):
    lm.index_of(2)
  with pytest.raises(IndexError, match="outside 0..2"):
    lm.name_of(3)


def test_label_map_json_round_trip_and_file_format(tmp_path):
  lm = LabelMap.from_categories([{"id": 40, "name": "cross"}, {"id": 3, "name": "circle"}])
  assert json.loads(lm.to_json()) == [{"index": 0, "category_id": 3, "name": "circle"},
                                      {"index": 1, "category_id": 40, "name": "cross"}]
  assert LabelMap.from_json(lm.to_json()) == lm
  path = str(tmp_path / "label_map.json")
  coco.save_label_map(lm, path)
  assert coco.load_label_map(path) == lm


@pytest.mark.parametrize("text, message", [
    ("[]", "non-empty list"),
    ('[{"index": 1, "category_id": 3, "name": "a"}]', "entry 0 has index 1"),
    ('[{"index": 0, "category_id": 3}]', "exactly the keys"),
    ('[{"index": 0, "category_id": 5, "name": "a"}, {"index": 1, "category_id": 3, "name": "b"}]',
     "strictly increasing"),
    ('[{"index": 0, "category_id": 1, "name": "a"}, {"index": 1, "category_id": 3, "name": "a"}]',
     "names must be unique"),
    ('[{"index": 0, "category_id": 1, "name": "a"},', "invalid JSON at line 1 column"),
])
def test_label_map_from_json_rejects_bad_files(text, message):
  with pytest.raises(CocoFormatError, match=message) as e:
    LabelMap.from_json(text, source="lm.json")
  assert "lm.json" in str(e.value)


def test_read_coco_json_accepts_a_valid_file(tmp_path):
  data = coco.read_coco_json(_write(tmp_path, _coco()))
  assert coco.label_map_from_coco(data).category_ids == (2, 7)


def test_missing_file_names_the_path(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.json"):
    coco.read_coco_json(str(tmp_path / "nope.json"))


def test_json_syntax_error_names_file_line_and_column(tmp_path):
  path = _write(tmp_path, '{\n  "images": [\n    {"id": 1,,}\n]}')
  with pytest.raises(CocoFormatError) as e:
    coco.read_coco_json(path)
  assert path in str(e.value)
  assert "line 3 column 14" in str(e.value)


@pytest.mark.parametrize("overrides, message", [
    ({"images": None}, '"images" must be a list'),
    ({"categories": []}, '"categories" is empty'),
    ({"images": [{"file_name": "a.jpg"}]}, r'images\[0\] needs an integer "id"'),
    ({"images": [{"id": 1}]}, r'images\[0\] \(id 1\) needs a non-empty string "file_name"'),
    ({"images": [{"id": 1, "file_name": "a", "width": 0}]}, '"width" must be a positive'),
    ({"annotations": [{"id": 5, "image_id": 1, "category_id": 7}]},
     r'annotation 0 \(id 5\) has no "bbox"'),
    ({"annotations": [{"image_id": 1, "category_id": 7, "bbox": [1, 2, 3]}]},
     '"bbox" must be 4 numbers'),
    ({"annotations": [{"image_id": "1", "category_id": 7, "bbox": [1, 2, 3, 4]}]},
     '"image_id" must be an integer'),
    ({"annotations": [{"image_id": 1, "bbox": [1, 2, 3, 4]}]}, 'has no "category_id"'),
    ({"annotations": [{"image_id": 1, "category_id": 7, "bbox": [1, 2, 3, 4], "iscrowd": 2}]},
     '"iscrowd" must be 0 or 1'),
    ({"categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}, "appears twice"),
    ({"categories": [{"id": 1}]}, 'needs a non-empty string "name"'),
])
def test_structural_errors_name_the_file_record_and_field(tmp_path, overrides, message):
  path = _write(tmp_path, _coco(**overrides))
  with pytest.raises(CocoFormatError, match=message) as e:
    coco.read_coco_json(path)
  assert path in str(e.value)


def test_missing_top_level_key_is_named(tmp_path):
  data = _coco()
  del data["images"]
  path = _write(tmp_path, data)
  with pytest.raises(CocoFormatError, match='missing the top-level "images" key'):
    coco.read_coco_json(path)


def test_annotation_index_in_error_is_the_list_position(tmp_path):
  anns = [{"id": 100 + i, "image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1]}
          for i in range(20)]
  del anns[17]["bbox"]
  path = _write(tmp_path, _coco(annotations=anns))
  with pytest.raises(CocoFormatError, match=r'annotation 17 \(id 117\) has no "bbox"'):
    coco.read_coco_json(path)


def test_categories_consistency_between_splits():
  lm = LabelMap.from_categories([{"id": 1, "name": "a"}, {"id": 4, "name": "b"}])
  assert coco.check_categories_consistent(
      lm, [{"id": 4, "name": "b"}, {"id": 9, "name": "z"}], "val.json") == [9]
  with pytest.raises(CocoFormatError, match="val.json: category id 4 is named 'c'"):
    coco.check_categories_consistent(lm, [{"id": 4, "name": "c"}], "val.json")
