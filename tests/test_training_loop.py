"""The training loop on the real tiny detector and real records: NaN policy,
seed-format logs, TensorBoard scalars, evaluation callback with EMA weights."""
import logging
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from retinanet import config as config_lib
from retinanet.training import train_lib
from retinanet.training.trainer import NonFiniteLossError
from retinanet import task
from tests.test_training_fixtures import tiny_config
from tests.test_training_units import SEED_LINE


@pytest.fixture(scope="module")
def files(shared_records):
  return shared_records(num_images=16)


def _poisoned(cfg, files, bad_batches):
  """The real input with NaN images in the batches whose index is in bad_batches."""
  base = task.RetinaNetTask(cfg).build_inputs(files, is_training=True)
  bad = tf.constant(sorted(bad_batches), tf.int64)

  def dataset_fn(ctx):
    def poison(index, element):
      images, labels = element
      is_bad = tf.reduce_any(tf.equal(index, bad)) if bad_batches else tf.constant(False)
      return tf.where(is_bad, tf.fill(tf.shape(images), np.nan), images), labels
    return base(ctx).enumerate().map(poison)
  return dataset_fn


def test_non_finite_loss_stops_naming_the_step(files, tmp_path, build_trainer):
  cfg = tiny_config(total_steps=6, steps_per_execution=3, log_every=3, checkpoint_every=100)
  tr = build_trainer(cfg, files, tmp_path, dataset_fn=_poisoned(cfg, files, {4}))
  with pytest.raises(NonFiniteLossError,
                     match=r"Non-finite loss or gradient at global step 5 ") as info:
    tr.train()
  # Step 5 is the middle of the second execution (steps 4..6): the loop stops there.
  assert info.value.step == 5
  # ReLU / max-pool may hide NaN activations from the loss; the gradient shows them.
  assert not np.isfinite(info.value.metrics["gradient_norm"])
  assert "nan_policy='restore'" in str(info.value)


def test_nan_policy_restore_reloads_the_last_checkpoint_and_continues(files, tmp_path, caplog,
                                                                    build_trainer):
  cfg = tiny_config(["train.nan_policy=\"restore\""], total_steps=6, steps_per_execution=3,
                    log_every=3, checkpoint_every=4)
  tr = build_trainer(cfg, files, tmp_path, dataset_fn=_poisoned(cfg, files, {4}))
  with caplog.at_level(logging.WARNING):
    result = tr.train()
  assert result.nan_restores == 1
  assert result.final_step == 6 and np.isfinite(result.final_losses["total_loss"])
  assert all(np.isfinite(v.numpy()).all() for v in tr.model.variables)
  assert any("Non-finite loss or gradient at global step 5; restored" in r.getMessage()
             and "ckpt-4" in r.getMessage() for r in caplog.records)


def test_nan_policy_restore_gives_up_after_max_restores(files, tmp_path, build_trainer):
  cfg = tiny_config(["train.nan_policy=\"restore\"", "train.max_nan_restores=2"], total_steps=6,
                    steps_per_execution=1, log_every=1, checkpoint_every=3)
  tr = build_trainer(cfg, files, tmp_path, dataset_fn=_poisoned(cfg, files, set(range(4, 40))))
  with pytest.raises(NonFiniteLossError, match="after 2 checkpoint restores") as info:
    tr.train()
  assert info.value.step == 4   # restored to step 3 each time; step 4 fails again


def test_logs_tensorboard_and_eval_callback_with_ema(files, tmp_path, caplog):
  cfg = tiny_config(["optimizer.ema_decay=0.5", "train.eval_every=2"], total_steps=4,
                    steps_per_execution=2, log_every=2, checkpoint_every=4)
  seen = []

  def eval_fn(model, step):
    seen.append((step, model.class_head.prediction.kernel.numpy().copy()))
    return {"AP": step / 100.0, "per_class": [0.1, 0.2]}   # non-scalars are not logged

  summary_dir = tmp_path / "tb"
  with caplog.at_level(logging.INFO):
    result = train_lib.train(cfg, train_files=files, model_dir=str(tmp_path / "model"),
                           eval_fn=eval_fn, summary_dir=str(summary_dir))
  messages = [r.getMessage() for r in caplog.records]
  for startup in ("Running on 1 replicas", "Trainable weights: ", "Total trainable parameters: ",
                  "Initial l2_regularization loss ", "No existing checkpoints found in",
                  "Starting training from step 0 for 4 steps with 2 steps per execution"):
    assert any(m.startswith(startup) for m in messages), startup
  log_lines = [m for m in messages if m.startswith("[global_step")]
  assert [int(re.match(r"\[global_step (\d+)/4\]", m).group(1)) for m in log_lines] == [2, 4]
  assert all(SEED_LINE.match(m) for m in log_lines), log_lines

  # The eval callback saw the EMA weights; the trained weights came back afterwards.
  assert [s for s, _ in seen] == [2, 4]
  assert result.eval_results == {2: {"AP": 0.02}, 4: {"AP": 0.04}}
  ema_kernel = tr_ema_kernel(tmp_path / "model")
  np.testing.assert_array_equal(seen[-1][1], ema_kernel)
  model = task.load_model_dir(str(tmp_path / "model"), config=cfg, use_ema=False).model
  assert not np.array_equal(seen[-1][1], model.class_head.prediction.kernel.numpy())

  scalars = _read_scalars(summary_dir / "train")
  assert {"total-loss", "class-loss", "box-loss", "l2-regularization", "gradient-norm",
          "learning-rate", "images-per-second"} <= set(scalars)
  assert sorted(scalars["total-loss"]) == [2, 4]
  assert scalars["total-loss"][4] == pytest.approx(result.final_losses["total_loss"], rel=1e-6)
  assert _read_scalars(summary_dir / "eval")["AP"] == {2: pytest.approx(0.02),
                                                       4: pytest.approx(0.04)}


def tr_ema_kernel(model_dir):
  model = task.load_model_dir(str(model_dir), config=tiny_config(), use_ema=True).model
  return model.class_head.prediction.kernel.numpy()


def _read_scalars(directory):
  values = {}
  for name in os.listdir(directory):
    for event in tf.compat.v1.train.summary_iterator(str(directory / name)):
      for v in event.summary.value:
        values.setdefault(v.tag, {})[event.step] = float(tf.make_ndarray(v.tensor))
  return values


def test_loss_falls_when_fitting_a_few_batches(files, tmp_path, build_trainer):
  """50 steps on 2 fixed batches (8 sample images, no augmentation): the loop optimizes."""
  cfg = tiny_config(["optimizer.gradient_clip_norm=2.0", "input.scale_min=1.0",
                     "input.scale_max=1.0", "input.horizontal_flip=false",
                     "optimizer.warmup_steps=5"],
                    total_steps=50, steps_per_execution=10, log_every=10, checkpoint_every=1000)
  base = task.RetinaNetTask(cfg).build_inputs(files, is_training=True)
  tr = build_trainer(cfg, files, tmp_path,
                     dataset_fn=lambda ctx: base(ctx).take(2).cache().repeat())
  result = tr.train()
  first, last = result.history[0][1], result.history[-1][1]
  assert [s for s, _ in result.history] == [10, 20, 30, 40, 50]
  assert last["total_loss"] < 0.8 * first["total_loss"], result.history
  assert last["box_loss"] < 0.75 * first["box_loss"], result.history
  assert last["class_loss"] < first["class_loss"]


def test_an_undecodable_record_is_skipped_and_counted(files, tmp_path):
  """A corrupt image that reached the TFRecords (the data stage's decode check bypassed)
  becomes a placeholder with no loss; the run finishes and counts it."""
  from data import example_codec  # pylint: disable=g-import-not-at-top
  from retinanet import coco  # pylint: disable=g-import-not-at-top
  from retinanet.dataloader import schema  # pylint: disable=g-import-not-at-top
  good = tf.io.gfile.glob(files)
  raw = next(iter(tf.data.TFRecordDataset(good[:1]))).numpy()
  parsed = schema.parse_example(raw)
  image = bytearray(parsed[schema.ENCODED])
  image[len(image) // 2:len(image) // 2 + 16] = b"\xff\x42" * 8  # an unsupported JPEG marker
  label_map = coco.LabelMap(tuple(range(1, 6)), ("a", "b", "c", "d", "e"))
  example, _ = example_codec.build_example(
      bytes(image), {"id": 999, "file_name": "broken.jpg"}, [], label_map, decode_check=False)
  broken = str(tmp_path / "broken.tfrecord")
  with tf.io.TFRecordWriter(broken) as writer:
    writer.write(example.SerializeToString())
  with pytest.raises(Exception):  # the pipeline's decoder itself rejects it
    example_codec.check_decodes(bytes(image), 1, 1)
  cfg = tiny_config(total_steps=8, steps_per_execution=4, log_every=4, checkpoint_every=100)
  cfg = config_lib.apply_overrides(cfg, ["input.shuffle_buffer=1"])
  result = train_lib.train(cfg, train_files=good + [broken], model_dir=str(tmp_path / "model"))
  assert result.final_step == 8 and np.isfinite(result.final_losses["total_loss"])
  # 17 records repeated: 8 steps x 4 images = 32 reads see the broken one once or twice.
  assert result.skipped_records in (1, 2)
