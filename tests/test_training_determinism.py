"""train.deterministic: two trainings with the same seeds give bit-identical weights."""
import logging
import os
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

from retinanet.training import determinism
from tests.test_training_fixtures import write_sample_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Trains the sample detector (sample/tiny: its size shows the drift) for 4 steps twice from the same seeds in one fresh process whose first
# TensorFlow op is the trainer's (threading is fixed at the first op), and prints a hash
# of each run's final weights.
TRAIN_TWICE = textwrap.dedent("""
    import hashlib, os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.pop("TF_NUM_INTEROP_THREADS", None)
    import tensorflow as tf
    from retinanet.training import trainer
    from retinanet import config as config_lib, configs
    files = sys.argv[2]
    cfg = config_lib.apply_overrides(configs.load_named_config("sample/tiny"), [
        "train.deterministic=" + sys.argv[3], "input.deterministic=true",
        "train.total_steps=4", "train.steps_per_execution=1", "train.log_every=4",
        "optimizer.warmup_steps=2", "optimizer.boundaries=[2,3]"])
    for run in ("a", "b"):
      model_dir = os.path.join(sys.argv[1], "model_" + run)
      trainer.train(cfg, train_files=files, model_dir=model_dir)
      reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(model_dir))
      digest = hashlib.sha256()
      for name in sorted(reader.get_variable_to_shape_map()):
        if name.startswith("model/"):
          digest.update(name.encode() + reader.get_tensor(name).tobytes())
      print("WEIGHTS", run, tf.config.threading.get_inter_op_parallelism_threads(),
            digest.hexdigest())
""")


@pytest.mark.slow
def test_deterministic_training_gives_identical_weights(tmp_path):
  files = write_sample_records(str(tmp_path / "records"), num_images=16)
  out = subprocess.run([sys.executable, "-c", TRAIN_TWICE, str(tmp_path), files, "true"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600, check=False)
  lines = [line.split() for line in out.stdout.splitlines() if line.startswith("WEIGHTS")]
  assert out.returncode == 0 and len(lines) == 2, out.stderr[-3000:]
  (_, _, threads_a, digest_a), (_, _, threads_b, digest_b) = lines
  assert threads_a == threads_b == "1"  # the trainer made TensorFlow run one op at a time
  assert digest_a == digest_b


def test_too_late_to_change_threading_warns_and_says_how(caplog, monkeypatch):
  monkeypatch.delenv("TF_NUM_INTEROP_THREADS", raising=False)
  tf.constant(1.0) + 1.0  # TensorFlow is initialized: its threading is fixed
  if tf.config.threading.get_inter_op_parallelism_threads() == 1:
    pytest.skip("this test process already runs one op at a time")
  with caplog.at_level(logging.WARNING):
    assert determinism.run_ops_one_at_a_time() is False
  assert "TF_NUM_INTEROP_THREADS=1" in caplog.text


def test_the_environment_variable_counts(monkeypatch):
  monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "1")
  assert determinism.run_ops_one_at_a_time() is True
