"""Fine-tuning from a checkpoint / pushed model dir with another class count, and
freezing by regex."""
import logging

import numpy as np
import pytest
import tensorflow as tf

from retinanet import factory
from retinanet.modeling.heads import prior_probability_bias
from retinanet.training import checkpointing
from retinanet.training import ema as ema_lib
from retinanet.training import finetune
from retinanet.training import train_lib
from retinanet import task
from tests.test_training_fixtures import tiny_config

HEAD_FINAL = ["class_head/prediction/kernel", "class_head/prediction/bias"]


def _write_source(directory, num_classes=5, with_ema=False, overrides=()):
  """A 'trained' model (random weights) saved like a training run; returns its values."""
  cfg = tiny_config([f"model.num_classes={num_classes}", *overrides])
  model = factory.build_model(cfg.model)
  rng = np.random.default_rng(0)
  paths = checkpointing.variable_paths(model)
  for var in paths.values():
    var.assign(rng.normal(size=var.shape).astype(np.float32))
  ema = ema_lib.WeightAverage(dict(paths), decay=0.9) if with_ema else None
  if ema is not None:
    for average in ema.averages.values():
      average.assign(average + 1.0)   # averages differ from the raw weights
  manager = tf.train.CheckpointManager(checkpointing.make_checkpoint(model=model, ema=ema),
                                       str(directory), max_to_keep=2, checkpoint_name="ckpt")
  manager.save(checkpoint_number=7)
  return {p: v.numpy() for p, v in paths.items()}


def _target(num_classes):
  model = factory.build_model(tiny_config([f"model.num_classes={num_classes}"]).model)
  return model, checkpointing.variable_paths(model)


def test_different_class_count_restores_all_but_the_class_prediction(tmp_path):
  source = _write_source(tmp_path / "pushed" / "1700000000" / "checkpoint")
  model, paths = _target(num_classes=3)
  fresh_kernel = model.class_head.prediction.kernel.numpy()
  report = finetune.init_from_checkpoint(
      model, str(tmp_path / "pushed"),
      class_prediction_variables=factory.class_prediction_variables(model),
      reinitialize_class_prediction=lambda: factory.reinitialize_class_prediction(model))
  assert report.source.endswith("checkpoint/ckpt-7")
  assert sorted(report.reinitialized) == sorted(HEAD_FINAL)
  assert len(report.restored) == len(paths) - 2 and not report.from_ema
  for path, var in paths.items():
    if path in HEAD_FINAL:
      continue
    np.testing.assert_array_equal(var.numpy(), source[path], err_msg=path)
  assert any(p.startswith("backbone/") for p in report.restored)
  kernel = model.class_head.prediction.kernel.numpy()
  assert kernel.shape == (3, 3, 16, 3) and not np.array_equal(kernel, fresh_kernel)
  assert abs(kernel.std() - 0.01) < 0.003          # re-drawn from N(0, 0.01)
  np.testing.assert_allclose(model.class_head.prediction.bias.numpy(),
                             prior_probability_bias(0.01), rtol=1e-6)


def test_same_class_count_restores_everything_preferring_ema(tmp_path):
  source = _write_source(tmp_path / "ckpt", with_ema=True)
  model, paths = _target(num_classes=5)
  report = finetune.init_from_checkpoint(
      model, str(tmp_path / "ckpt" / "ckpt-7"),
      class_prediction_variables=factory.class_prediction_variables(model))
  assert not report.reinitialized and len(report.restored) == len(paths)
  assert sorted(report.from_ema) == sorted(paths)
  for path, var in paths.items():
    np.testing.assert_allclose(var.numpy(), source[path] + 1.0, rtol=1e-6, err_msg=path)
  raw = finetune.init_from_checkpoint(
      model, str(tmp_path / "ckpt"), prefer_ema=False,
      class_prediction_variables=factory.class_prediction_variables(model))
  assert not raw.from_ema
  np.testing.assert_array_equal(paths["class_head/prediction/kernel"].numpy(),
                                source["class_head/prediction/kernel"])


def test_any_other_mismatch_is_an_error_naming_the_variable(tmp_path):
  _write_source(tmp_path / "ckpt", overrides=["model.head.num_channels=32"])
  model, _ = _target(num_classes=5)
  before = model.backbone.stem_conv.kernel.numpy()
  with pytest.raises(ValueError, match=r"class_head/conv1/kernel: checkpoint shape"):
    finetune.init_from_checkpoint(
        model, str(tmp_path / "ckpt"),
        class_prediction_variables=factory.class_prediction_variables(model))
  # Nothing was half-restored.
  np.testing.assert_array_equal(model.backbone.stem_conv.kernel.numpy(), before)
  with pytest.raises(FileNotFoundError, match="no checkpoint at .*missing"):
    finetune.init_from_checkpoint(model, str(tmp_path / "missing"), class_prediction_variables=[])
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="no complete tf checkpoint found in .*empty"):
    finetune.init_from_checkpoint(model, str(tmp_path / "empty"), class_prediction_variables=[])


def test_freeze_mask_matches_paths_and_names():
  model, paths = _target(num_classes=5)
  frozen = finetune.freeze_mask(paths, [r"^backbone/conv[23]_", r"box_head/prediction"])
  assert frozen and all(p.startswith(("backbone/conv2_", "backbone/conv3_", "box_head/prediction"))
                        for p in frozen)
  assert "box_head/prediction/kernel" in frozen and "backbone/stem_conv/kernel" not in frozen
  with pytest.raises(ValueError, match="not a valid regular expression"):
    finetune.freeze_mask(paths, ["backbone/("])


def test_train_finetunes_and_freezes(tmp_path, caplog, shared_records):
  source = _write_source(tmp_path / "base" / "checkpoint")
  files = shared_records(num_images=8)
  cfg = tiny_config(["model.num_classes=3", "optimizer.base_learning_rate=0.001",
                     "optimizer.gradient_clip_norm=1.0"], total_steps=2,
                    steps_per_execution=2, log_every=2, checkpoint_every=100)
  with caplog.at_level(logging.INFO):
    result = train_lib.train(cfg, train_files=files, model_dir=str(tmp_path / "model"),
                           finetune_from=str(tmp_path / "base"),
                           freeze_patterns=[r"^backbone/", r"^fpn/"])
  report = result.finetune
  assert sorted(report.reinitialized) == sorted(HEAD_FINAL)
  assert report.frozen and all(p.startswith(("backbone/", "fpn/")) for p in report.frozen)
  assert any("Trainable weights after freezing" in r.getMessage() for r in caplog.records)
  assert any(r.getMessage().startswith("fine-tuning from") for r in caplog.records)
  # The log says what happens: training starts from the fine-tuning source, not at random.
  assert (f"running model in train mode with the weights of {tmp_path / 'base'} (fine-tuning)!"
          in caplog.text)
  assert "random weights" not in caplog.text
  model = task.load_model_dir(str(tmp_path / "model"), config=cfg).model
  paths = checkpointing.variable_paths(model)
  for path in report.frozen:
    if "moving_" not in path:   # BN statistics still update in training mode
      np.testing.assert_array_equal(paths[path].numpy(), source[path], err_msg=path)
  changed = [p for p in paths if p.startswith("box_head/") and
             not np.array_equal(paths[p].numpy(), source[p])]
  assert changed, "the unfrozen heads should have trained"
