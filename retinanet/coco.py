"""Reading and validating COCO "instances" JSON files, and the label map.

A COCO file maps sparse category ids (1..90 for COCO, anything for a user's
own data) to names. Training needs contiguous class indices 0..N-1: the
`LabelMap` assigns them in increasing category-id order, so the same set of
categories always gives the same indices.

Validation here is structural (missing keys, wrong types): such a file cannot
be converted and the error names the file, the record and the field. Problems
that are about the data (a box outside its image, an unknown category, an
annotation of a missing image) are handled and counted by the converter.
"""
from __future__ import annotations

import dataclasses
import json
import reprlib
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import tensorflow as tf


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 3, 60, 60, 6, 4


def _show(value: Any) -> str:
  """A short repr for error messages: bounded depth and length, whatever the input."""
  return _REPR.repr(value)


class CocoFormatError(ValueError):
  """A COCO JSON (or label map) file that cannot be used; names file and field."""


@dataclasses.dataclass(frozen=True)
class LabelMapEntry:
  index: int
  category_id: int
  name: str


INT64_RANGE = (-2**63, 2**63 - 1)


def is_int(value: Any) -> bool:
  """A JSON integer that fits an int64 (what an Example stores; bool is not one)."""
  return (isinstance(value, int) and not isinstance(value, bool) and
          INT64_RANGE[0] <= value <= INT64_RANGE[1])




def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class LabelMap:
  """Contiguous class index <-> original category id and name.

  `category_ids[i]` and `names[i]` describe class index i; category ids are
  strictly increasing and names are unique.
  """
  category_ids: Tuple[int, ...]
  names: Tuple[str, ...]

  def __post_init__(self) -> None:
    if len(self.category_ids) != len(self.names):
      raise CocoFormatError(
          f"label map: {len(self.category_ids)} category ids but {len(self.names)} names")
    for i, cid in enumerate(self.category_ids):
      if not is_int(cid):
        raise CocoFormatError(f"label map: category id {_show(cid)} of index {i} is not an integer")
      if i and cid <= self.category_ids[i - 1]:
        raise CocoFormatError(
            f"label map: category ids must be strictly increasing; index {i} has {cid} after "
            f"{self.category_ids[i - 1]}")
    seen: Dict[str, int] = {}
    for i, name in enumerate(self.names):
      if not isinstance(name, str) or not name:
        raise CocoFormatError(f"label map: index {i} has an empty or non-string name {_show(name)}")
      if name in seen:
        raise CocoFormatError(
            f"label map: name {_show(name)} is used by category ids "
            f"{self.category_ids[seen[name]]} and {self.category_ids[i]}; names must be unique")
      seen[name] = i
    object.__setattr__(self, "_index_by_id", {c: i for i, c in enumerate(self.category_ids)})
    object.__setattr__(self, "_index_by_name", seen)

  @classmethod
  def from_categories(cls, categories: Sequence[Mapping[str, Any]],
                      source: str = "categories") -> "LabelMap":
    """Builds the map from COCO `categories` records (any order)."""
    by_id: Dict[int, str] = {}
    for i, cat in enumerate(categories):
      where = f"{source}: categories[{i}]"
      if not isinstance(cat, Mapping):
        raise CocoFormatError(f"{where} is not an object")
      if not is_int(cat.get("id")):
        raise CocoFormatError(f"{where} needs an integer \"id\", got {_show(cat.get('id'))}")
      if not isinstance(cat.get("name"), str) or not cat["name"]:
        raise CocoFormatError(f"{where} (id {_show(cat['id'])}) needs a non-empty string \"name\"")
      if cat["id"] in by_id:
        raise CocoFormatError(
            f"{where}: category id {_show(cat['id'])} appears twice ({_show(by_id[cat['id']])} and "
            f"{_show(cat['name'])})")
      by_id[cat["id"]] = cat["name"]
    if not by_id:
      raise CocoFormatError(f"{source}: \"categories\" is empty; at least one class is needed")
    ids = tuple(sorted(by_id))
    try:
      return cls(ids, tuple(by_id[c] for c in ids))
    except CocoFormatError as e:
      raise CocoFormatError(f"{source}: {e}") from e

  @property
  def num_classes(self) -> int:
    return len(self.category_ids)

  @property
  def entries(self) -> List[LabelMapEntry]:
    return [LabelMapEntry(i, c, n) for i, (c, n) in enumerate(zip(self.category_ids, self.names))]

  def has_category(self, category_id: int) -> bool:
    return category_id in self._index_by_id  # type: ignore[attr-defined]

  def index_of(self, category_id: int) -> int:
    """Class index of an original category id; KeyError naming the valid ids."""
    try:
      return self._index_by_id[category_id]  # type: ignore[attr-defined]
    except KeyError:
      raise KeyError(f"category id {category_id} is not in the label map "
                     f"(ids: {list(self.category_ids)})") from None

  def index_of_name(self, name: str) -> int:
    try:
      return self._index_by_name[name]  # type: ignore[attr-defined]
    except KeyError:
      raise KeyError(f"class name {_show(name)} is not in the label map (names: {list(self.names)})"
                     ) from None

  def category_id_of(self, index: int) -> int:
    self._check_index(index)
    return self.category_ids[index]

  def name_of(self, index: int) -> str:
    self._check_index(index)
    return self.names[index]

  def _check_index(self, index: int) -> None:
    if not is_int(index) or not 0 <= index < self.num_classes:
      raise IndexError(f"class index {_show(index)} is outside 0..{self.num_classes - 1}")

  def to_json(self) -> str:
    """JSON text: a list of {"index", "category_id", "name"} in index order."""
    rows = [dataclasses.asdict(e) for e in self.entries]
    return json.dumps(rows, indent=1) + "\n"

  @classmethod
  def from_json(cls, text: str, source: str = "label map") -> "LabelMap":
    """Parses `to_json` output; indices must be 0..N-1 in order."""
    try:
      rows = json.loads(text)
    except json.JSONDecodeError as e:
      raise CocoFormatError(
          f"{source}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
    if not isinstance(rows, list) or not rows:
      raise CocoFormatError(f"{source}: expected a non-empty list of "
                            "{\"index\", \"category_id\", \"name\"} objects")
    ids, names = [], []
    for i, row in enumerate(rows):
      if not isinstance(row, dict) or set(row) != {"index", "category_id", "name"}:
        raise CocoFormatError(f"{source}: entry {i} must have exactly the keys index, "
                              f"category_id, name; got {_show(row)}")
      if row["index"] != i:
        raise CocoFormatError(f"{source}: entry {i} has index {_show(row['index'])}; "
                              "indices must be 0..N-1 in order")
      ids.append(row["category_id"])
      names.append(row["name"])
    try:
      return cls(tuple(ids), tuple(names))
    except CocoFormatError as e:
      raise CocoFormatError(f"{source}: {e}") from e


def save_label_map(label_map: LabelMap, path: str) -> None:
  """Writes `label_map.to_json()` to a local or gs:// path."""
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(label_map.to_json())


def load_label_map(path: str) -> LabelMap:
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"label map file {path} does not exist")
  with tf.io.gfile.GFile(path, "r") as f:
    return LabelMap.from_json(f.read(), source=path)


def _require_list(data: Mapping[str, Any], key: str, source: str) -> List[Any]:
  if key not in data:
    raise CocoFormatError(
        f"{source}: missing the top-level \"{key}\" key (a COCO instances file needs "
        "\"images\", \"annotations\" and \"categories\")")
  if not isinstance(data[key], list):
    raise CocoFormatError(f"{source}: \"{key}\" must be a list, got {type(data[key]).__name__}")
  return data[key]


def _validate_image(i: int, image: Any, source: str, for_evaluation: bool) -> None:
  where = f"{source}: images[{i}]"
  if not isinstance(image, dict):
    raise CocoFormatError(f"{where} is not an object")
  if not is_int(image.get("id")):
    raise CocoFormatError(f"{where} needs an integer \"id\", got {_show(image.get('id'))}")
  name = image.get("file_name")
  if not for_evaluation and (not isinstance(name, str) or not name):
    raise CocoFormatError(
        f"{where} (id {_show(image['id'])}) needs a non-empty string \"file_name\"")
  for key in ("width", "height"):
    if key in image and not (is_int(image[key]) and image[key] > 0):
      raise CocoFormatError(
          f"{where} (id {_show(image['id'])}): \"{key}\" must be a positive integer, "
          f"got {_show(image[key])}")


def _validate_annotation(i: int, ann: Any, source: str, for_evaluation: bool) -> None:
  where = f"{source}: annotation {i}"
  if not isinstance(ann, dict):
    raise CocoFormatError(f"{where} is not an object")
  if "id" in ann:
    where += f" (id {_show(ann['id'])})"
    if not is_int(ann["id"]):
      raise CocoFormatError(f"{where}: \"id\" must be an integer")
  if for_evaluation:
    for key in ("id", "area", "iscrowd"):
      if key not in ann:
        raise CocoFormatError(f"{where} has no \"{key}\" (pycocotools needs it)")
    if not is_int(ann["id"]) or ann["id"] < 1:
      raise CocoFormatError(f"{where}: annotation ids must be unique integers >= 1 "
                            "(pycocotools reads id 0 as 'unmatched')")
  for key in ("image_id", "category_id"):
    if key not in ann:
      raise CocoFormatError(f"{where} has no \"{key}\"")
    if not is_int(ann[key]):
      raise CocoFormatError(f"{where}: \"{key}\" must be an integer, got {_show(ann[key])}")
  if "bbox" not in ann:
    raise CocoFormatError(f"{where} has no \"bbox\" (expected [x, y, width, height] in pixels)")
  box = ann["bbox"]
  if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
    raise CocoFormatError(
        f"{where}: \"bbox\" must be 4 numbers [x, y, width, height], got {_show(box)}")
  if "area" in ann and not _is_number(ann["area"]):
    raise CocoFormatError(f"{where}: \"area\" must be a number, got {_show(ann['area'])}")
  if "iscrowd" in ann and ann["iscrowd"] not in (0, 1):
    raise CocoFormatError(f"{where}: \"iscrowd\" must be 0 or 1, got {_show(ann['iscrowd'])}")


def _check_references(data: Mapping[str, Any], source: str) -> None:
  """Evaluation: unique image and annotation ids, and every reference resolves."""
  image_ids = set()
  for i, image in enumerate(data["images"]):
    if image["id"] in image_ids:
      raise CocoFormatError(f"{source}: images[{i}] repeats image id {_show(image['id'])}")
    image_ids.add(image["id"])
  category_ids = {category["id"] for category in data["categories"]}
  annotation_ids = set()
  for i, ann in enumerate(data["annotations"]):
    where = f"{source}: annotation {i} (id {_show(ann['id'])})"
    if ann["id"] in annotation_ids:
      raise CocoFormatError(f"{where}: annotation ids must be unique integers >= 1 "
                            "(pycocotools indexes annotations by id)")
    annotation_ids.add(ann["id"])
    if ann["image_id"] not in image_ids:
      raise CocoFormatError(f"{where}: image_id {ann['image_id']} is not in \"images\"")
    if ann["category_id"] not in category_ids:
      raise CocoFormatError(f"{where}: category_id {ann['category_id']} is not in "
                            "\"categories\"")


def validate_coco(data: Any, source: str, for_evaluation: bool = False) -> None:
  """Checks the structure of a parsed instances file; raises CocoFormatError.

  The one COCO validator, for conversion (the default) and for evaluation.
  Needed: top-level "images", "annotations", "categories" lists; each image
  an integer "id" (and, for conversion, a "file_name"); each annotation
  integer "image_id" and "category_id" and a 4-number "bbox"; "area" and
  "iscrowd" (0/1) optional for conversion. For evaluation (pycocotools), also
  unique annotation ids >= 1, "area" and "iscrowd" on every annotation,
  unique image ids, and image / category ids that resolve.
  """
  if not isinstance(data, dict):
    raise CocoFormatError(f"{source}: the top level must be a JSON object, "
                          f"got {type(data).__name__}")
  images = _require_list(data, "images", source)
  annotations = _require_list(data, "annotations", source)
  categories = _require_list(data, "categories", source)
  for i, image in enumerate(images):
    _validate_image(i, image, source, for_evaluation)
  for i, ann in enumerate(annotations):
    _validate_annotation(i, ann, source, for_evaluation)
  LabelMap.from_categories(categories, source)
  if for_evaluation:
    _check_references(data, source)


def read_coco_json(path: str, for_evaluation: bool = False) -> Dict[str, Any]:
  """Reads (local or gs://), parses and validates a COCO instances file (`validate_coco`)."""
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"COCO annotations file {path} does not exist")
  with tf.io.gfile.GFile(path, "rb") as f:
    raw = f.read()
  try:
    data = json.loads(raw)
  except json.JSONDecodeError as e:
    raise CocoFormatError(
        f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
  except UnicodeDecodeError as e:
    raise CocoFormatError(f"{path}: not UTF-8 text ({e})") from e
  validate_coco(data, path, for_evaluation)
  return data


def label_map_from_coco(data: Mapping[str, Any], source: str = "categories") -> LabelMap:
  return LabelMap.from_categories(data["categories"], source)


def check_categories_consistent(label_map: LabelMap, categories: Sequence[Mapping[str, Any]],
                                source: str) -> List[int]:
  """Returns the category ids of `categories` missing from the label map.

  A category id that exists in both with a different name means the two
  files describe different datasets: that raises CocoFormatError.
  """
  missing = []
  for cat in categories:
    if label_map.has_category(cat["id"]):
      known = label_map.name_of(label_map.index_of(cat["id"]))
      if known != cat["name"]:
        raise CocoFormatError(
            f"{source}: category id {_show(cat['id'])} is named {_show(cat['name'])} but the "
            f"label map names it {_show(known)}; the splits must share one category list")
    else:
      missing.append(cat["id"])
  return missing


# ------------------------------------------------------------------ streaming

# Annotation keys never built while streaming: polygons are most of a COCO file.
STREAM_SKIPPED_KEYS = ("segmentation",)
_TOP_LEVEL_LISTS = ("images", "annotations", "categories")
SLIM_IMAGE_KEYS = ("id", "file_name", "width", "height")
SLIM_ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox", "area", "iscrowd")


@dataclasses.dataclass
class SlimCoco:
  """A validated instances file without what conversion does not use (segmentation,
  licenses, info, extra keys): memory is bounded by these records, not the raw JSON."""
  source: str
  images: List[Dict[str, Any]]
  annotations: List[Dict[str, Any]]
  categories: List[Dict[str, Any]]


def _json_error(source: str, error: Exception) -> "CocoFormatError":
  """One line naming the file, from ijson's (possibly bytes, multi-line) message."""
  message = error.args[0] if error.args else str(error)
  if isinstance(message, bytes):
    message = message.decode("utf-8", "replace")
  return CocoFormatError(f"{source}: invalid JSON ({str(message).strip().splitlines()[0]})")


def _slim(record: Mapping[str, Any], keys: Sequence[str]) -> Dict[str, Any]:
  return {k: record[k] for k in keys if k in record}


def _stream_items(f, source: str):
  """Yields (top-level key, index, item) for the items of images / annotations / categories,
  building each item from ijson events and never building STREAM_SKIPPED_KEYS values of
  annotations. Raises CocoFormatError for a top level that is not an object of lists."""
  import ijson  # pylint: disable=g-import-not-at-top
  from ijson.common import ObjectBuilder  # pylint: disable=g-import-not-at-top
  events = ijson.parse(f, use_float=True)
  try:
    first = next(events, None)
    if first is None or first[1] != "start_map":
      raise CocoFormatError(f"{source}: the top level must be a JSON object")
    key, item_prefix, index, builder, skipped = None, "", -1, None, ()
    for prefix, event, value in events:
      if prefix == "":
        if event == "map_key":
          key = value
          item_prefix = f"{key}.item"
          skipped = tuple(f"{item_prefix}.{k}" for k in STREAM_SKIPPED_KEYS
                          if key == "annotations")
        continue
      if key not in _TOP_LEVEL_LISTS:
        continue
      if prefix == key:
        if event not in ("start_array", "end_array"):
          raise CocoFormatError(f"{source}: \"{key}\" must be a list, got a JSON "
                                f"{event.replace('start_', '')}")
        if event == "start_array":
          index = -1
          yield key, None, None  # the list exists (possibly empty)
        continue
      if skipped and (prefix.startswith(skipped) or
                      (prefix == item_prefix and event == "map_key" and
                       f"{item_prefix}.{value}" in skipped)):
        continue
      if builder is None:
        index += 1
        if event not in ("start_map", "start_array"):
          yield key, index, value  # a scalar item: the validator names it
          continue
        builder = ObjectBuilder()
      builder.event(event, value)
      if prefix == item_prefix and event in ("end_map", "end_array"):
        yield key, index, builder.value
        builder = None
  except ijson.JSONError as e:
    raise _json_error(source, e) from e
  except UnicodeDecodeError as e:
    raise CocoFormatError(f"{source}: not UTF-8 text ({e})") from e


def read_coco_slim(path: str) -> SlimCoco:
  """Streams, validates and slims an instances file in one pass (ijson; local or gs://).

  The same checks as `validate_coco` (errors name the file, the record and the
  field), with the memory of the slim records only.
  """
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"COCO annotations file {path} does not exist")
  slim = SlimCoco(path, [], [], [])
  present = set()
  with tf.io.gfile.GFile(path, "rb") as f:
    for key, index, item in _stream_items(f, path):
      if index is None:
        present.add(key)
      elif key == "images":
        _validate_image(index, item, path, for_evaluation=False)
        slim.images.append(_slim(item, SLIM_IMAGE_KEYS))
      elif key == "annotations":
        _validate_annotation(index, item, path, for_evaluation=False)
        slim.annotations.append(_slim(item, SLIM_ANNOTATION_KEYS))
      else:
        slim.categories.append(item)
  for key in _TOP_LEVEL_LISTS:
    if key not in present:
      raise CocoFormatError(
          f"{path}: missing the top-level \"{key}\" key (a COCO instances file needs "
          "\"images\", \"annotations\" and \"categories\")")
  LabelMap.from_categories(slim.categories, path)
  return slim


def read_categories(path: str) -> List[Dict[str, Any]]:
  """The "categories" of an instances file, streamed without building anything else."""
  import ijson  # pylint: disable=g-import-not-at-top
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"COCO annotations file {path} does not exist")
  with tf.io.gfile.GFile(path, "rb") as f:
    try:
      categories = list(ijson.items(f, "categories.item", use_float=True))
    except ijson.JSONError as e:
      raise _json_error(path, e) from e
  LabelMap.from_categories(categories, path)
  return categories
