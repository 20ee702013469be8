"""Continuous evaluation evaluates each checkpoint exactly once and stops correctly."""
import json
import os

import pytest

from retinanet.evaluation import continuous


class FakeClock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now

  def sleep(self, seconds):
    self.now += seconds


def test_checkpoint_step():
  assert continuous.checkpoint_step("/m/checkpoint/ckpt-1200") == 1200
  with pytest.raises(ValueError, match="does not end"):
    continuous.checkpoint_step("/m/checkpoint/model")


def test_each_checkpoint_once_until_final_step(tmp_path):
  # Checkpoints appear over time: 100 at t=0, 200 at t=10, 300 (final) at t=20.
  clock = FakeClock()
  schedule = [(0, "ckpt-100"), (10, "ckpt-200"), (20, "ckpt-300")]
  listing = lambda d: [os.path.join(d, n) for t, n in schedule if t <= clock.now]
  evaluated = []

  def evaluate_fn(prefix):
    evaluated.append(os.path.basename(prefix))
    return {"AP": 0.1 * len(evaluated)}

  records = continuous.watch(str(tmp_path / "ckpt"), evaluate_fn, output_dir=str(tmp_path / "eval"),
                             final_step=300, timeout_seconds=100, poll_seconds=5,
                             list_checkpoints=listing, sleep=clock.sleep, clock=clock)
  assert evaluated == ["ckpt-100", "ckpt-200", "ckpt-300"]
  assert [r["step"] for r in records] == [100, 200, 300]
  lines = open(tmp_path / "eval" / continuous.RESULTS_FILE).read().splitlines()
  assert [json.loads(l)["metrics"]["AP"] for l in lines] == pytest.approx([0.1, 0.2, 0.3])

  # A restarted evaluator skips what was already evaluated and stops on the timeout.
  evaluated.clear()
  records = continuous.watch(str(tmp_path / "ckpt"), evaluate_fn, output_dir=str(tmp_path / "eval"),
                             final_step=10_000, timeout_seconds=30, poll_seconds=5,
                             list_checkpoints=listing, sleep=clock.sleep, clock=clock)
  assert evaluated == [] and records == []
  assert len(open(tmp_path / "eval" / continuous.RESULTS_FILE).read().splitlines()) == 3


def test_timeout_without_checkpoints(tmp_path):
  clock = FakeClock()
  records = continuous.watch(str(tmp_path), lambda p: {}, output_dir=str(tmp_path / "eval"),
                             final_step=10, timeout_seconds=20, poll_seconds=5,
                             list_checkpoints=lambda d: [], sleep=clock.sleep, clock=clock)
  assert records == [] and 20 < clock.now <= 30
