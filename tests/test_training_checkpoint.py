"""Checkpoints: object paths, atomic 'latest', partial-checkpoint fallback, and a
kill-and-resume run that matches an uninterrupted one step for step."""
import json
import logging
import shutil

import numpy as np
import pytest
import tensorflow as tf

from retinanet import config as config_lib
from retinanet import factory
from retinanet.training import checkpointing
from retinanet.training import train_lib
from retinanet import task
from tests.test_training_fixtures import tiny_config

RESUME_OVERRIDES = ("optimizer.ema_decay=0.9", "loss.normalizer_momentum=0.9")


def _small_checkpoint(directory, value):
  var = tf.Variable(value)
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=var), directory, max_to_keep=5,
                                       checkpoint_name="ckpt")
  return var, manager


def test_variable_paths_are_the_checkpoint_keys(tmp_path):
  model = factory.build_model(tiny_config().model)
  paths = checkpointing.variable_paths(model)
  assert len(paths) == len(model.variables)
  prefix = tf.train.Checkpoint(model=model).write(str(tmp_path / "ck"))
  keys = {k for k, _ in tf.train.list_variables(prefix) if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}
  assert keys == {checkpointing.checkpoint_key("model", p) for p in paths}
  reader = tf.train.load_checkpoint(prefix)
  for path, var in list(paths.items())[::7]:
    np.testing.assert_array_equal(reader.get_tensor(checkpointing.checkpoint_key("model", path)),
                                  var.numpy())
  assert "class_head/prediction/kernel" in paths


def test_state_file_is_written_after_the_checkpoint_files(tmp_path, monkeypatch):
  """CheckpointManager updates `checkpoint` only once index and data are in place."""
  from tensorflow.python.checkpoint import (  # pylint: disable=g-import-not-at-top
      checkpoint_management)
  seen = []
  original = checkpoint_management.update_checkpoint_state_internal

  def spy(save_dir, model_checkpoint_path, *args, **kwargs):
    seen.append((model_checkpoint_path, checkpointing.is_complete(model_checkpoint_path),
                 tf.io.gfile.glob(model_checkpoint_path + "_temp*")))
    return original(save_dir, model_checkpoint_path, *args, **kwargs)

  monkeypatch.setattr(checkpoint_management, "update_checkpoint_state_internal", spy)
  _, manager = _small_checkpoint(str(tmp_path), 1.0)
  path = manager.save(checkpoint_number=7)
  assert seen and all(p == path and complete and not temp for p, complete, temp in seen)


def test_partial_checkpoint_falls_back_to_the_previous_one(tmp_path):
  var, manager = _small_checkpoint(str(tmp_path), 1.0)
  first = manager.save(checkpoint_number=1)
  var.assign(2.0)
  second = manager.save(checkpoint_number=2)
  assert checkpointing.latest_complete_checkpoint(str(tmp_path)) == second
  for data in tf.io.gfile.glob(second + ".data-*"):
    tf.io.gfile.remove(data)          # index without data: a broken copy
  assert not checkpointing.is_complete(second)
  assert tf.train.latest_checkpoint(str(tmp_path)) == second   # TF itself would pick it
  assert checkpointing.latest_complete_checkpoint(str(tmp_path)) == first
  tf.io.gfile.remove(first + ".index")
  assert checkpointing.latest_complete_checkpoint(str(tmp_path)) is None


def test_find_checkpoint_in_a_pushed_model_dir(tmp_path):
  _, manager = _small_checkpoint(str(tmp_path / "pushed" / "1700000000" / "checkpoint"), 3.0)
  path = manager.save(checkpoint_number=5)
  (tmp_path / "pushed" / "1700000000" / "saved_model").mkdir()
  assert checkpointing.find_checkpoint(str(tmp_path / "pushed")) == path
  assert checkpointing.find_checkpoint(path) == path
  with pytest.raises(FileNotFoundError, match="no complete tf checkpoint"):
    checkpointing.find_checkpoint(str(tmp_path / "pushed" / "1700000000" / "saved_model"))


def _losses_by_step(result):
  return {step: m["total_loss"] for step, m in result.history}


def _all_tensors(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k != "_CHECKPOINTABLE_OBJECT_GRAPH"
          and not k.startswith(("save_counter", "iterator/"))}


def test_kill_and_resume_matches_an_uninterrupted_run(tmp_path, shared_records):
  files = shared_records(num_images=16)
  cfg = tiny_config(RESUME_OVERRIDES, total_steps=6, steps_per_execution=1, log_every=1,
                    checkpoint_every=3)
  straight = train_lib.train(cfg, train_files=files, model_dir=str(tmp_path / "a"))
  assert straight.final_step == 6 and sorted(_losses_by_step(straight)) == [1, 2, 3, 4, 5, 6]

  # "Kill" the run right after its step-3 checkpoint: a directory holding only ckpt-3.
  killed = tmp_path / "b"
  killed.mkdir()
  for f in tf.io.gfile.glob(str(tmp_path / "a" / "ckpt-3.*")):
    shutil.copy(f, killed)
  tf.compat.v1.train.update_checkpoint_state(str(killed), str(killed / "ckpt-3"))

  # A new Trainer, built from the config's JSON form, resumes from what is on disk at ckpt-3
  # (model, optimizer, EMA, normalizer, input position). A fresh process after SIGKILL is
  # the end-to-end gate tests/test_pipeline_resume.py.
  restored_cfg = config_lib.config_from_dict(json.loads(json.dumps(config_lib.config_to_dict(cfg))))
  result = train_lib.train(restored_cfg, train_files=files, model_dir=str(killed))
  resumed = {"history": result.history, "final_step": result.final_step}
  assert resumed["final_step"] == 6
  resumed_losses = {step: m["total_loss"] for step, m in resumed["history"]}
  assert sorted(resumed_losses) == [4, 5, 6]
  np.testing.assert_allclose([resumed_losses[s] for s in (4, 5, 6)],
                             [_losses_by_step(straight)[s] for s in (4, 5, 6)], rtol=1e-5)

  # The final checkpoints agree on every saved tensor: weights, momentum slots,
  # iterations, EMA averages and the loss normalizer.
  a, b = _all_tensors(str(tmp_path / "a" / "ckpt-6")), _all_tensors(str(tmp_path / "b" / "ckpt-6"))
  assert a.keys() == b.keys()
  # The default strategy's input iterator is part of the checkpoint (a variant tensor).
  assert any(k.startswith("iterator/") for k, _ in tf.train.list_variables(
      str(tmp_path / "a" / "ckpt-6")))
  assert any(k.startswith("ema/") for k in a) and any(k.startswith("loss_normalizer/") for k in a)
  for key in a:
    if a[key].dtype.kind == "f":
      np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-6, err_msg=key)
    else:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)

  # A partial newest checkpoint: the trainer resumes from the previous one.
  broken = tmp_path / "broken"
  shutil.copytree(tmp_path / "a", broken)
  for data in tf.io.gfile.glob(str(broken / "ckpt-6.data-*")):
    tf.io.gfile.remove(data)
  tr = train_lib.build_trainer(cfg, train_files=files, model_dir=str(broken),
                             strategy=tf.distribute.get_strategy())
  assert tr.restore_latest() == str(broken / "ckpt-3")
  assert tr.global_step == 3

  # Restoring for evaluation/export swaps in the EMA weights.
  model, _, _, prefix = task.load_model_dir(str(tmp_path / "a"), config=cfg)
  assert prefix.endswith("ckpt-6")
  kernel = model.class_head.prediction.kernel.numpy()
  ema_key = checkpointing.checkpoint_key(
      "ema", checkpointing.ema_average_path("class_head/prediction/kernel"))
  np.testing.assert_array_equal(kernel, a[ema_key])
  assert not np.array_equal(kernel, a["model/class_head/prediction/kernel" +
                                      checkpointing.VARIABLE_SUFFIX])
  raw = task.load_model_dir(str(tmp_path / "a"), config=cfg, use_ema=False).model
  np.testing.assert_array_equal(raw.class_head.prediction.kernel.numpy(),
                                a["model/class_head/prediction/kernel" +
                                  checkpointing.VARIABLE_SUFFIX])


def test_resume_with_state_the_checkpoint_lacks(tmp_path, caplog, shared_records):
  """A checkpoint without EMA / normalizer state (e.g. the option was off) still resumes."""
  files = shared_records(num_images=4)
  strategy = tf.distribute.get_strategy()
  plain = train_lib.build_trainer(tiny_config(), train_files=files, model_dir=str(tmp_path / "m"),
                                strategy=strategy)
  plain.optimizer.iterations.assign(3)
  plain.save_checkpoint()
  richer = train_lib.build_trainer(tiny_config(RESUME_OVERRIDES), train_files=files,
                                 model_dir=str(tmp_path / "m"), strategy=strategy)
  with caplog.at_level(logging.WARNING):
    assert richer.restore_latest().endswith("ckpt-3")
  assert richer.global_step == 3
  warnings = " ".join(r.getMessage() for r in caplog.records)
  assert "has no ema state" in warnings and "has no loss_normalizer state" in warnings
  kernel = richer.model.class_head.prediction.kernel.numpy()
  np.testing.assert_array_equal(kernel, plain.model.class_head.prediction.kernel.numpy())
  np.testing.assert_array_equal(
      richer.ema.averages["class_head/prediction/kernel"].numpy(), kernel)  # reset to restored
