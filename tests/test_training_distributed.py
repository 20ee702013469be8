"""Two replicas (MirroredStrategy over two logical CPUs) == one replica on the same
global batch: same losses, gradient norms and updated weights.

The two logical CPUs are configured by tests/conftest.py before TensorFlow
initializes, so the cases run in the test process.
"""
import weakref

import numpy as np
import pytest
import tensorflow as tf

from retinanet.training import checkpointing, train_lib
from tests.conftest import LOGICAL_CPUS
from tests.test_training_fixtures import tiny_config


@pytest.fixture(scope="module")
def files(shared_records):
  return shared_records(num_images=8)


def _max_rel(a, b):
  return max(float(np.max(np.abs(a[k] - b[k])) / (np.max(np.abs(a[k])) + 1e-6)) for k in a)


def _run(tmp_path, files, overrides):
  """One replica (default strategy) and two (mirrored), from the same initial weights."""
  assert len(tf.config.list_logical_devices("CPU")) == LOGICAL_CPUS
  cfg = tiny_config(list(overrides), total_steps=2, steps_per_execution=2, log_every=1,
                    checkpoint_every=100)
  runs, initial = {}, None
  for name in ("default", "mirrored"):
    strategy = train_lib.create_strategy(name)
    tr = train_lib.build_trainer(cfg, train_files=files, model_dir=str(tmp_path / name),
                               strategy=strategy)
    paths = checkpointing.variable_paths(tr.model)
    if initial is None:
      initial = {p: v.numpy() for p, v in paths.items()}
    else:
      for p, v in paths.items():
        v.assign(initial[p])
    result = tr.train()
    runs[name] = dict(
        replicas=strategy.num_replicas_in_sync,
        history=result.history,
        weights={p: v.numpy() for p, v in paths.items()},
        ema=({p: v.numpy() for p, v in tr.ema.averages.items()} if tr.ema else {}),
        normalizer=(float(tr.loss_normalizer.value.numpy()) if tr.loss_normalizer else None))
    # close() frees the input pipeline itself, so no later garbage collection (in another
    # test) waits for the multi-device iterator's autotuning thread.
    iterator = weakref.ref(tr.iterator)
    tr.close()
    assert iterator() is None
  one, two = runs["default"], runs["mirrored"]
  return dict(
      replicas=[one["replicas"], two["replicas"]],
      history=[one["history"], two["history"]],
      weights_rel_diff=_max_rel(one["weights"], two["weights"]),
      ema_rel_diff=_max_rel(one["ema"], two["ema"]) if one["ema"] else None,
      normalizers=[one["normalizer"], two["normalizer"]],
      moved=max(float(np.max(np.abs(one["weights"][k] - initial[k]))) for k in initial))


def _check_same(result):
  assert result["replicas"] == [1, 2]
  one, two = result["history"]
  assert [s for s, _ in one] == [s for s, _ in two] == [1, 2]
  for (_, a), (_, b) in zip(one, two):
    for key in ("class_loss", "box_loss", "total_loss", "l2_regularization", "gradient_norm",
                "num_positives", "normalizer"):
      assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), key
  assert result["moved"] > 1e-4       # the step really changed the weights
  assert result["weights_rel_diff"] < 1e-4


def test_two_replicas_equal_one_replica(tmp_path, files):
  """Frozen batch norm (no batch statistics), EMA and a moving-average loss normalizer."""
  result = _run(tmp_path, files, ["model.backbone.freeze_batch_norm=true", "optimizer.ema_decay=0.9",
                           "loss.normalizer_momentum=0.9", "optimizer.warmup_steps=0",
                           "optimizer.gradient_clip_norm=0.5"])
  _check_same(result)
  assert result["ema_rel_diff"] < 1e-4
  assert result["normalizers"][0] == pytest.approx(result["normalizers"][1])


def test_two_replicas_with_sync_batch_norm_equal_one_replica(tmp_path, files):
  """Batch norm in training mode: synchronized BN gives the global-batch statistics."""
  _check_same(_run(tmp_path, files, ["model.norm.use_sync_bn=true", "optimizer.warmup_steps=0"]))


def test_two_replicas_equal_one_replica_with_mobilenet_v3(tmp_path, files):
  """MobileNetV3-Small (SE, hard-swish, depthwise convs) and separable heads under
  MirroredStrategy: the same step as one replica."""
  _check_same(_run(tmp_path, files, ["model.backbone.type=mobilenet_v3_small",
                              "model.head.separable=true", "model.backbone.freeze_batch_norm=true",
                              "optimizer.warmup_steps=0"]))
