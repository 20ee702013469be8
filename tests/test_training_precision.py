"""Mixed precision training steps: bfloat16 and loss-scaled float16 stay finite and
match the float32 loss at the same (seeded) initial weights."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from retinanet.training import optimizer as optimizer_lib
from retinanet.training import strategy as strategy_lib
from retinanet.training import train_lib
from tests.test_training_fixtures import tiny_config


@pytest.fixture(scope="module")
def files(shared_records):
  return shared_records(num_images=8)


def _train(precision, files, model_dir, total_steps):
  cfg = tiny_config([f'train.mixed_precision="{precision}"'], total_steps=total_steps,
                    steps_per_execution=1, log_every=1, checkpoint_every=100)
  previous = tf_keras.mixed_precision.global_policy()
  strategy_lib.set_precision_policy(precision)
  try:
    tf_keras.utils.set_random_seed(cfg.train.seed)
    tr = train_lib.build_trainer(cfg, train_files=files, model_dir=str(model_dir),
                               strategy=tf.distribute.get_strategy())
    result = tr.train()
    tr.close()   # as train_lib.train does; the model and optimizer stay readable
    return tr, result
  finally:
    tf_keras.mixed_precision.set_global_policy(previous)


@pytest.fixture(scope="module")
def float32_first_loss(files, tmp_path_factory):
  _, result = _train("float32", files, tmp_path_factory.mktemp("f32"), total_steps=2)
  return result.history[0][1]


@pytest.mark.parametrize("precision,compute_dtype,rtol", [
    ("mixed_bfloat16", "bfloat16", 2e-2),
    ("mixed_float16", "float16", 2e-3),
])
def test_mixed_precision_steps_are_finite_and_close_to_float32(
    precision, compute_dtype, rtol, files, tmp_path, float32_first_loss):
  tr, result = _train(precision, files, tmp_path, total_steps=2)
  assert tf_keras.mixed_precision.global_policy().name == "float32"  # restored
  assert tr.model.backbone.stem_conv.compute_dtype == compute_dtype
  assert all(v.dtype == tf.float32 for v in tr.model.variables)
  assert result.final_step == 2
  for _, metrics in result.history:
    assert all(np.isfinite(v) for v in metrics.values()), metrics
  assert all(np.isfinite(v.numpy()).all() for v in tr.model.variables)
  first = result.history[0][1]
  for key in ("class_loss", "box_loss", "total_loss"):
    assert first[key] == pytest.approx(float32_first_loss[key], rel=rtol), key
  if precision == "mixed_float16":
    assert optimizer_lib.is_loss_scaled(tr.optimizer) and tr.optimizer.dynamic
    assert np.isfinite(float(tr.optimizer.loss_scale)) and float(tr.optimizer.loss_scale) >= 1
    keys = {k for k, _ in tf.train.list_variables(result.checkpoint_path)}
    assert "optimizer/loss_scale/current_loss_scale/.ATTRIBUTES/VARIABLE_VALUE" in keys
  else:
    assert not optimizer_lib.is_loss_scaled(tr.optimizer)


def test_xla_step_matches_the_graph_step(files, tmp_path, float32_first_loss):
  """train.jit_compile=True compiles forward + backward with XLA (slow to compile on CPU)."""
  cfg = tiny_config(["train.jit_compile=true"], total_steps=2, steps_per_execution=1,
                    log_every=1, checkpoint_every=100)
  result = train_lib.train(cfg, train_files=files, model_dir=str(tmp_path))
  first = result.history[0][1]
  for key in ("class_loss", "box_loss", "total_loss", "gradient_norm"):
    assert first[key] == pytest.approx(float32_first_loss[key], rel=1e-3), key
  assert np.isfinite(result.final_losses["total_loss"])
