"""Unit tests of the training library pieces that need no detector model:
learning-rate schedules, L2 / clipping / kernel filter, EMA math, log format,
progress bar, strategy and precision factories."""
import io
import math
import re

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from retinanet import config as config_lib
from retinanet.training import ema as ema_lib
from retinanet.training import learning_rate as lr_lib
from retinanet.training import optimizer as optimizer_lib
from retinanet.training import progress
from retinanet.training import strategy as strategy_lib


# ---- learning rate -----------------------------------------------------------

def _piecewise():
  return lr_lib.WarmupPiecewiseConstant(base_learning_rate=0.08, warmup_steps=500,
                                        warmup_learning_rate=0.0067,
                                        boundaries=(15000, 20000), decay_rates=(0.1, 0.01))


@pytest.mark.parametrize("step,expected", [
    (0, 0.0067),
    (250, 0.0067 + (0.08 - 0.0067) * 0.5),
    (499, 0.0067 + (0.08 - 0.0067) * 499 / 500),
    (500, 0.08),
    (14999, 0.08),
    (15000, 0.008),
    (19999, 0.008),
    (20000, 0.0008),
    (10**6, 0.0008),
])
def test_piecewise_schedule_at_hand_computed_steps(step, expected):
  assert float(_piecewise()(step)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("step,expected", [
    (0, 0.01),
    (50, 0.01 + (0.1 - 0.01) * 0.5),
    (100, 0.1),                                              # t = 0: cos(0) = 1
    (550, 0.1 * (0.05 + 0.95 * 0.5)),                        # t = 0.5
    (325, 0.1 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi / 4)))),  # t = 0.25
    (1000, 0.1 * 0.05),                                      # t = 1
    (5000, 0.1 * 0.05),                                      # clamped after total_steps
])
def test_cosine_schedule_at_hand_computed_steps(step, expected):
  schedule = lr_lib.WarmupCosine(base_learning_rate=0.1, warmup_steps=100,
                                 warmup_learning_rate=0.01, total_steps=1000, alpha=0.05)
  assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)


def test_schedules_round_trip_through_keras_serialization():
  for schedule in (_piecewise(), lr_lib.WarmupCosine(0.1, 10, 0.0, 100, 0.1)):
    restored = tf_keras.optimizers.schedules.deserialize(
        tf_keras.optimizers.schedules.serialize(schedule))
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    for step in (0, 5, 10, 50, 99, 100):
      assert float(restored(step)) == float(schedule(step))


def test_schedule_is_indexed_by_optimizer_iterations():
  """A resumed optimizer (iterations restored) continues with lr(iterations)."""
  opt = optimizer_lib.build_optimizer(_piecewise(), momentum=0.9, mixed_precision="float32")
  var = tf.Variable(1.0)
  opt.build([var])
  opt.iterations.assign(15000)
  assert float(optimizer_lib.current_learning_rate(opt)) == pytest.approx(0.008)
  # SGD momentum, first update: v = -lr * g, w += v  (g = 1)
  opt.apply_gradients([(tf.constant(1.0), var)])
  assert float(var) == pytest.approx(1.0 - 0.008)


def test_build_learning_rate_from_config():
  o = config_lib.OptimizerConfig(schedule="cosine", warmup_steps=0, base_learning_rate=0.2,
                                 cosine_alpha=0.0)
  schedule = lr_lib.build_learning_rate(o, total_steps=10)
  assert isinstance(schedule, lr_lib.WarmupCosine)
  assert float(schedule(5)) == pytest.approx(0.1)


def test_piecewise_rejects_mismatched_boundaries():
  with pytest.raises(ValueError, match="one rate per boundary"):
    lr_lib.WarmupPiecewiseConstant(0.1, 0, 0.0, (10, 20), (0.1,))


# ---- optimizer helpers -------------------------------------------------------

def test_l2_regularization_covers_kernels_only_and_matches_hand_value():
  layer = tf_keras.layers.Dense(2, kernel_initializer="ones", bias_initializer="ones")
  bn = tf_keras.layers.BatchNormalization()
  layer.build((None, 3))
  bn.build((None, 2))
  variables = layer.trainable_variables + bn.trainable_variables
  kernels = optimizer_lib.kernel_variables(variables)
  assert [v.name.split("/")[-1] for v in kernels] == ["kernel:0"]
  # 6 ones: sum w^2 / 2 = 3, times decay.
  assert float(optimizer_lib.l2_regularization(kernels, 1e-2)) == pytest.approx(0.03)
  assert float(optimizer_lib.l2_regularization(kernels, 0.0)) == 0.0


def test_clip_by_global_norm_reports_the_norm_before_clipping():
  grads = [tf.constant([3.0, 0.0]), tf.constant([4.0])]
  clipped, norm = optimizer_lib.clip_by_global_norm(grads, 1.0)
  assert float(norm) == pytest.approx(5.0)
  np.testing.assert_allclose(clipped[0].numpy(), [0.6, 0.0], rtol=1e-6)
  np.testing.assert_allclose(clipped[1].numpy(), [0.8], rtol=1e-6)
  unclipped, norm = optimizer_lib.clip_by_global_norm(grads, 0.0)
  assert float(norm) == pytest.approx(5.0)
  np.testing.assert_allclose(unclipped[1].numpy(), [4.0])


def test_float16_optimizer_is_loss_scaled():
  opt = optimizer_lib.build_optimizer(_piecewise(), momentum=0.9, mixed_precision="mixed_float16")
  assert optimizer_lib.is_loss_scaled(opt) and opt.dynamic
  opt = optimizer_lib.build_optimizer(_piecewise(), momentum=0.9,
                                      mixed_precision="mixed_bfloat16")
  assert not optimizer_lib.is_loss_scaled(opt)


# ---- EMA ---------------------------------------------------------------------

def test_weight_average_follows_the_warmup_decay():
  var = tf.Variable(1.0)
  average = ema_lib.WeightAverage({"w": var}, decay=0.5)
  var.assign(2.0)
  average.update()   # d = min(0.5, 1/10) = 0.1: avg = 0.1 * 1 + 0.9 * 2
  assert float(average.averages["w"]) == pytest.approx(1.9)
  var.assign(0.0)
  average.update()   # d = min(0.5, 2/11) = 2/11
  assert float(average.averages["w"]) == pytest.approx(1.9 * 2 / 11)
  for _ in range(20):
    average.update()  # n = 2..21: d = (1 + n) / (10 + n) up to n = 7, then 0.5 (14 times)
  assert float(average.averages["w"]) == pytest.approx(1.9 * 2 / 11 * (3 / 12) * (4 / 13) *
                                                       (5 / 14) * (6 / 15) * (7 / 16) *
                                                       (8 / 17) * 0.5**14, rel=1e-5)


def test_averaged_weights_swaps_in_and_back():
  var = tf.Variable([1.0, 2.0])
  average = ema_lib.WeightAverage({"w": var}, decay=0.9)
  var.assign([5.0, 6.0])
  with average.averaged_weights():
    np.testing.assert_allclose(var.numpy(), [1.0, 2.0])
  np.testing.assert_allclose(var.numpy(), [5.0, 6.0])


def test_weight_average_rejects_bad_decay():
  with pytest.raises(ValueError, match="ema_decay"):
    ema_lib.WeightAverage({"w": tf.Variable(1.0)}, decay=1.0)


# ---- log line and progress bar ------------------------------------------------

SEED_LINE = re.compile(
    r"^\[global_step (\d+)/(\d+)\] \[ETA: (\d\d):(\d\d):(\d\d)\] \[(\d+\.\d\d) imgs/s\] "
    r"\{'box-loss': [-\d.e]+, 'class-loss': [-\d.e]+, 'weighted-loss': [-\d.e]+, "
    r"'l2-regularization': [-\d.e]+, 'total-loss': [-\d.e]+, 'gradient-norm': [-\d.e]+, "
    r"'execution-time': [-\d.e]+, 'learning-rate': [-\d.e]+\}$")


def test_log_line_matches_the_seed_format():
  seed = ("[global_step 400/33750] [ETA: 01:50:14] [1290.65 imgs/s] {'box-loss': 0.006, "
          "'class-loss': 0.547, 'weighted-loss': 0.84, 'l2-regularization': 0.407, "
          "'total-loss': 1.246, 'gradient-norm': 4.103, 'execution-time': 39.67, "
          "'learning-rate': 0.132}")
  assert SEED_LINE.match(seed)
  metrics = {"box_loss": 0.0061, "class_loss": 0.5468, "weighted_loss": 0.8401,
             "l2_regularization": 0.40712, "total_loss": 1.24622, "gradient_norm": 4.10311,
             "execution_time": 39.6712, "learning_rate": 0.13211, "num_positives": 12.0}
  line = progress.format_log_line(400, 33750, 6614.4, 1290.6512, metrics)
  assert line == seed
  assert SEED_LINE.match(line)


@pytest.mark.parametrize("seconds,text", [(0, "00:00:00"), (59.6, "00:01:00"),
                                          (6614, "01:50:14"), (90061, "25:01:01"),
                                          (float("nan"), "--:--:--")])
def test_format_eta(seconds, text):
  assert progress.format_eta(seconds) == text


class _Stream(io.StringIO):
  def __init__(self, tty):
    super().__init__()
    self._tty = tty

  def isatty(self):
    return self._tty


def test_progress_bar_only_on_a_tty():
  quiet = _Stream(tty=False)
  bar = progress.ProgressBar(10, quiet)
  bar.update(5, 12.0, 1.5)
  bar.close()
  assert quiet.getvalue() == ""
  loud = _Stream(tty=True)
  bar = progress.ProgressBar(10, loud, width=10)
  bar.update(5, 12.0, 1.5)
  bar.update(10, 12.0, 1.25)
  bar.close()
  text = loud.getvalue()
  assert text.startswith("\r[#####.....] 5/10 12.0 imgs/s loss 1.500")
  assert "\r[##########] 10/10" in text and text.endswith("\n")


def test_write_scalars_creates_tensorboard_events(tmp_path):
  writer = tf.summary.create_file_writer(str(tmp_path))
  progress.write_scalars(writer, 7, {"total-loss": 1.5})
  writer.close()
  events = list(tf.compat.v1.train.summary_iterator(str(next(tmp_path.iterdir()))))
  values = [(e.step, v.tag, tf.make_ndarray(v.tensor)) for e in events for v in e.summary.value]
  assert values == [(7, "total-loss", np.float32(1.5))]


# ---- strategy and precision ---------------------------------------------------

def test_create_strategy_names():
  assert strategy_lib.create_strategy("default").num_replicas_in_sync == 1
  one = strategy_lib.create_strategy("one_device")
  assert isinstance(one, tf.distribute.OneDeviceStrategy)
  with pytest.raises(ValueError, match="not one of"):
    strategy_lib.create_strategy("horovod")


def test_set_precision_policy():
  previous = tf_keras.mixed_precision.global_policy()
  try:
    policy = strategy_lib.set_precision_policy("mixed_bfloat16")
    assert (policy.compute_dtype, policy.variable_dtype) == ("bfloat16", "float32")
    with pytest.raises(ValueError, match="mixed_precision"):
      strategy_lib.set_precision_policy("float8")
  finally:
    tf_keras.mixed_precision.set_global_policy(previous)


def test_weight_average_reset_starts_from_the_current_weights():
  var = tf.Variable(1.0)
  average = ema_lib.WeightAverage({"w": var}, decay=0.9)
  average.update()
  var.assign(4.0)       # e.g. fine-tuning weights loaded after the EMA was created
  average.reset()
  assert float(average.averages["w"]) == 4.0 and int(average.num_updates) == 0


def test_tpu_strategy_is_built_from_the_flags(monkeypatch):
  """create_strategy("tpu"): resolver from --tpu/--tpu_zone/--gcp_project, connect to a
  remote TPU (not a local one), initialize, TPUStrategy over that resolver."""
  resolver = strategy_lib.tpu_cluster_resolver("grpc://10.0.0.2:8470")
  assert resolver.master() == "grpc://10.0.0.2:8470"
  assert resolver.cluster_spec().as_dict() == {"worker": ["10.0.0.2:8470"]}
  calls = []
  monkeypatch.setattr(strategy_lib, "tpu_cluster_resolver",
                      lambda *args: calls.append(("resolver", args)) or "RESOLVER")
  monkeypatch.setattr(tf.config, "experimental_connect_to_cluster",
                      lambda r: calls.append(("connect", r)))
  monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system",
                      lambda r: calls.append(("initialize", r)))

  class FakeTPUStrategy:
    num_replicas_in_sync = 32

    def __init__(self, r):
      calls.append(("strategy", r))

  monkeypatch.setattr(tf.distribute, "TPUStrategy", FakeTPUStrategy)
  strategy_lib.create_strategy("tpu", tpu="my-v3-32", tpu_zone="europe-west4-a",
                               gcp_project="proj")
  assert calls == [("resolver", ("my-v3-32", "europe-west4-a", "proj")),
                   ("connect", "RESOLVER"), ("initialize", "RESOLVER"),
                   ("strategy", "RESOLVER")]
  calls.clear()
  strategy_lib.create_strategy("tpu", tpu="local")
  assert [c[0] for c in calls] == ["resolver", "initialize", "strategy"]  # a TPU VM: no connect
