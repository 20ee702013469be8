"""Trainer executor helpers: the training fingerprint and workspace retention."""
import json
import os
import time

from components.trainer import executor


def _fingerprint(**changes):
  args = dict(config_json=json.dumps({"train": {"total_steps": 10}}), strategy="default",
              freeze_patterns="[]", code_version="c1", examples_uri="/x/examples/1",
              label_map_uri="/x/label_map/1", base_model_uri=None)
  args.update(changes)
  return executor.training_fingerprint(**args)


def test_fingerprint_changes_with_everything_that_defines_a_training():
  base = _fingerprint()
  assert base == _fingerprint() and len(base) == 16
  # JSON formatting of the same config is the same training.
  assert _fingerprint(config_json='{"train":{"total_steps":10}}') == base
  for change in (dict(config_json=json.dumps({"train": {"total_steps": 11}})),
                 dict(strategy="mirrored"), dict(freeze_patterns='["^backbone/"]'),
                 dict(code_version="c2"), dict(examples_uri="/x/examples/2"),
                 dict(label_map_uri="/x/label_map/2"), dict(base_model_uri="/m")):
    assert _fingerprint(**change) != base, change


def test_prune_keeps_the_current_and_the_newest_unfinished(tmp_path):
  for i, name in enumerate(["a", "b", "c", "current"]):
    path = tmp_path / name / "checkpoint"
    path.mkdir(parents=True)
    (path / "ckpt-1.index").write_text("x")
    os.utime(path / "ckpt-1.index", (time.time() - 100 + i, time.time() - 100 + i))
  removed = executor.prune_unfinished_trainings(str(tmp_path), keep=1, current="current")
  assert sorted(os.path.basename(p) for p in removed) == ["a", "b"]
  assert sorted(os.listdir(tmp_path)) == ["c", "current"]
  assert executor.prune_unfinished_trainings(str(tmp_path / "none"), 2, "x") == []
