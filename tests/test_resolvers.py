"""The resolvers' selections (components/resolvers.py), by hand; the latest-blessed one also
against TFX's own LatestBlessedModelStrategy on the same artifacts."""
from components import resolvers as r


def test_window_takes_the_newest_conversion_of_each_of_the_last_spans():
  # (span, artifact id): span 2 converted twice (ids 5 and 9), span 0 is not a span.
  items = [(1, 3), (2, 5), (3, 7), (2, 9), (0, 11)]
  assert [items[i] for i in r.newest_per_span(items, 2)] == [(2, 9), (3, 7)]
  assert [items[i] for i in r.newest_per_span(items, 9)] == [(1, 3), (2, 9), (3, 7)]
  assert [items[i] for i in r.newest_per_span(items, 1, first=True)] == [(1, 3)]
  assert r.newest_per_span([], 2) == [] and r.newest_per_span([(0, 1)], 2) == []


def test_a_span_whose_newest_validation_blocked_is_left_out_of_the_window():
  # (span, anomalies id, blocking): span 3 blocked; span 2 blocked, then accepted on a rerun.
  validations = [(1, 1, 0), (2, 2, 1), (3, 3, 1), (2, 4, 0)]
  assert r.passed_spans(validations) == {1, 2}
  assert r.passed_spans([]) == set()


def test_schema_of_earlier_spans_only_so_a_rerun_resolves_the_same():
  # (changed, validated span, id): inferred at span 1, a copy at span 2, updated at span 3.
  items = [(1, 1, 10), (0, 2, 20), (1, 3, 30)]
  assert r.current_schema_index(items, 1) is None       # the first span: infer
  assert r.current_schema_index(items, 2) == 0
  assert r.current_schema_index(items, 3) == 0          # its own update is not its input
  assert r.current_schema_index(items, 4) == 2


def test_warm_start_is_the_newest_blessed_model_of_earlier_spans():
  models = [(1, 1), (2, 2), (3, 3), (4, 0)]  # (id, newest span trained on)
  assert r.warm_start_index(models, [1, 2, 3, 4], 1) is None
  assert r.warm_start_index(models, [1, 3], 3) == 0   # model 2 not blessed
  assert r.warm_start_index(models, [1, 2, 3], 3) == 1
  assert r.warm_start_index(models, [1, 2, 3], 9) == 2


def _artifact(artifact_type, artifact_id: int, **properties):
  artifact = artifact_type()
  artifact.id = artifact_id
  for key, value in properties.items():
    artifact.set_int_custom_property(key, value)
  return artifact


def test_latest_blessed_agrees_with_tfx_latest_blessed_model_strategy():
  from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
      LatestBlessedModelStrategy)
  from tfx.types import standard_artifacts
  from retinanet import layout
  keys = layout.BlessingKeys
  assert r.latest_blessed_index([3, 8, 5], [3, 5]) == 2 and r.latest_blessed_index([3], []) is None
  models = [_artifact(standard_artifacts.Model, i) for i in (1, 2, 3, 4)]
  cases = {
      "none blessed": [(10, 1, 0), (11, 2, 0)],
      "newest blessed is not the newest model": [(10, 1, 1), (11, 3, 1), (12, 4, 0)],
      "blessed twice, unblessed once": [(10, 2, 1), (11, 2, 0), (12, 2, 1), (13, 1, 1)],
      "no blessing yet": [],
  }
  for name, blessings in cases.items():
    inputs = lambda: {"model": list(models), "model_blessing": [  # noqa: E731
        _artifact(standard_artifacts.ModelBlessing, i,
                  **{keys.CURRENT_MODEL_ID: m, keys.BLESSED: b}) for i, m, b in blessings]}
    ours = r.LatestBlessedStrategy().resolve_artifacts(None, inputs())
    theirs = LatestBlessedModelStrategy().resolve_artifacts(None, inputs())
    assert ({k: [a.id for a in v] for k, v in ours.items()}
            == {k: [a.id for a in v] for k, v in theirs.items()}), name
