"""data/spans.py: `{SPAN}` patterns and the latest / given / rolling-window selection (TFX's)."""
import os

import pytest

from data import spans as spans_lib
from data.spans import SpanError


def _drop(root, name, with_images=True):
  os.makedirs(os.path.join(root, name), exist_ok=True)
  with open(os.path.join(root, name, "annotations.json"), "w") as f:
    f.write("{}")
  if with_images:
    os.makedirs(os.path.join(root, name, "images"), exist_ok=True)


def _patterns(root):
  return (os.path.join(str(root), "span-{SPAN}", "annotations.json"),
          os.path.join(str(root), "span-{SPAN}", "images"))


def test_spans_are_found_and_ordered_by_number_not_text(tmp_path):
  for name in ("span-2", "span-10", "span-9", "span-007", "other"):
    _drop(tmp_path, name)
  found = spans_lib.find_spans(*_patterns(tmp_path))
  assert [s.number for s in found] == [2, 7, 9, 10]
  assert found[1].annotations.endswith(os.path.join("span-007", "annotations.json"))
  assert found[1].images.endswith(os.path.join("span-007", "images"))


def test_latest_given_and_rolling_window(tmp_path):
  for number in (1, 2, 3, 10):
    _drop(tmp_path, f"span-{number}")
  found = spans_lib.find_spans(*_patterns(tmp_path))
  assert [s.number for s in spans_lib.select_spans(found)] == [10]
  assert [s.number for s in spans_lib.select_spans(found, span=2)] == [2]
  assert [s.number for s in spans_lib.select_spans(found, last=3)] == [2, 3, 10]
  assert [s.number for s in spans_lib.select_spans(found, last=9)] == [1, 2, 3, 10]


@pytest.mark.parametrize("kwargs, message", [
    (dict(span=4), "span 4 does not exist; the spans are 1, 2"),
    (dict(last=0), "must be >= 1"),
    (dict(span=1, last=1), "not both"),
])
def test_bad_selections_say_what_exists(tmp_path, kwargs, message):
  for number in (1, 2):
    _drop(tmp_path, f"span-{number}")
  found = spans_lib.find_spans(*_patterns(tmp_path))
  with pytest.raises(SpanError, match=message):
    spans_lib.select_spans(found, **kwargs)


def test_bad_patterns_and_missing_data_name_the_pattern(tmp_path):
  annotations, images = _patterns(tmp_path)
  with pytest.raises(SpanError, match="no span matches"):
    spans_lib.find_spans(annotations, images)
  with pytest.raises(SpanError, match=r"must contain \{SPAN\} exactly once"):
    spans_lib.find_spans(str(tmp_path / "annotations.json"), images)
  _drop(tmp_path, "span-1", with_images=False)
  with pytest.raises(SpanError, match="span 1 .* has no image directory"):
    spans_lib.find_spans(annotations, images)
  _drop(tmp_path, "span-1")
  _drop(tmp_path, "span-01")
  with pytest.raises(SpanError, match="span 1 matches both"):
    spans_lib.find_spans(annotations, images)


def _span_examples(metadata_path):
  """(span, artifact id) of every Examples artifact recorded in MLMD, oldest first."""
  from pipeline import metadata_queries  # pylint: disable=g-import-not-at-top
  store = metadata_queries.open_store(metadata_path)
  return [(int(a.properties["span"].int_value), a.id)
          for a in sorted(store.get_artifacts_by_type("Examples"), key=lambda a: a.id)]


def test_the_data_stage_takes_the_latest_span_records_it_and_caches_a_rerun(tmp_path, capsys):
  """The CLI as a user runs it: --dataset=spans converts the newest drop, the Examples
  artifact carries its span number, and a rerun without a new drop is served from cache."""
  from data import sample_data  # pylint: disable=g-import-not-at-top
  from pipeline import cli  # pylint: disable=g-import-not-at-top
  drops = tmp_path / "drops"
  for number in (1, 2):
    sample_data.generate_sample_dataset(str(drops / f"span-{number}"), num_train=6, num_val=3,
                                        image_size=(64, 64), seed=number)
  argv = ["--runner=local", f"--output_dir={tmp_path / 'run'}", "--dataset=spans",
          f"--span_pattern={drops}/span-{{SPAN}}", "--to_stage=data"]
  metadata = str(tmp_path / "run" / "metadata.sqlite")
  assert cli.main(argv) == 0
  assert [span for span, _ in _span_examples(metadata)] == [2]
  sample_data.generate_sample_dataset(str(drops / "span-3"), num_train=6, num_val=3,
                                      image_size=(64, 64), seed=3)
  assert cli.main(argv) == 0
  assert [span for span, _ in _span_examples(metadata)] == [2, 3]
  capsys.readouterr()
  assert cli.main(argv) == 0  # no new drop: the data stage comes from the cache
  assert "CocoExampleGen       cached" in capsys.readouterr().out
  assert [span for span, _ in _span_examples(metadata)] == [2, 3]
  assert cli.main(argv + ["--span=1"]) == 0  # an older span on request
  assert [span for span, _ in _span_examples(metadata)] == [2, 3, 1]
