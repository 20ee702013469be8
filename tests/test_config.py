"""The config tree: strict keys, cross-field checks, JSON round trip, overrides."""
import json

import pytest

from retinanet import config as config_lib


def test_defaults_validate_and_round_trip(tmp_path):
  config = config_lib.ExperimentConfig()
  config_lib.validate(config)
  path = str(tmp_path / "c.json")
  config_lib.save_config(config, path)
  assert config_lib.load_config(path) == config


@pytest.mark.parametrize("data, key", [
    ({"modle": {}}, "modle"),
    ({"model": {"backone": {}}}, "model.backone"),
    ({"model": {"fpn": {"num_chanels": 3}}}, "model.fpn.num_chanels"),
    ({"train": {"auxillary_head": True}}, "train.auxillary_head"),
])
def test_unknown_key_is_named(data, key):
  with pytest.raises(config_lib.ConfigError, match=f"unknown config key {key}"):
    config_lib.config_from_dict(data)


@pytest.mark.parametrize("data, message", [
    ({"model": {"num_classes": "80"}}, "model.num_classes: expected an integer"),
    ({"model": {"input_size": [640]}}, "model.input_size: expected 2 values"),
    ({"train": {"jit_compile": 1}}, "train.jit_compile: expected true/false"),
])
def test_wrong_types_are_named(data, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.config_from_dict(data)


@pytest.mark.parametrize("data, message", [
    ({"model": {"backbone": {"depth": 42}}}, "model.backbone.depth=42"),
    ({"model": {"input_size": [600, 640]}}, r"model.input_size\[0\]=600"),
    ({"model": {"fpn": {"min_level": 4, "max_level": 3}}}, "max_level must be in min_level"),
    ({"model": {"fpn": {"min_level": 2}}}, "min_level must be 3..5"),
    ({"model": {"matcher": {"positive_iou": 0.3, "negative_iou": 0.4}}}, "negative_iou"),
    ({"optimizer": {"boundaries": [10, 20], "decay_rates": [0.1]}}, "same length"),
    ({"postprocess": {"nms_mode": "soft"}}, "postprocess.nms_mode='soft'"),
    ({"train": {"mixed_precision": "float16"}}, "train.mixed_precision"),
    ({"train": {"total_steps": 10}, "optimizer": {"warmup_steps": 20}}, "warmup_steps"),
    ({"model": {"head": {"use_batch_norm": True, "use_group_norm": True}}}, "exclusive"),
    ({"model": {"fpn": {"use_group_norm": True, "num_channels": 48}}},
     r"model.fpn.num_channels=48 must be a multiple of model.norm.group_norm_groups=32"),
    ({"model": {"matcher": {"crowd_ioa": 0.0}}}, "crowd_ioa"),
    ({"loss": {"box_loss": "l1"}}, "loss.box_loss='l1'"),
    ({"loss": {"box_loss": "giou"}}, "box_loss_weight=50 with loss.box_loss='giou'"),
    ({"optimizer": {"weight_decay": 0.05}}, "set loss.l2_weight_decay instead"),
    ({"optimizer": {"type": "adam"}}, "optimizer.type='adam'"),
])
def test_cross_field_checks(data, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.config_from_dict(data)


def test_mixed_box_loss_conventions_are_rejected_with_the_numbers():
  # The seed's scaled targets with Model Garden's loss settings (the old default).
  mixed = {"model": {"box_variances": [0.1, 0.1, 0.2, 0.2]},
           "loss": {"huber_delta": 0.1, "box_loss_weight": 50.0}}
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.config_from_dict(mixed)
  message = str(e.value)
  # dy: bend 0.1 * 0.1 = 0.01 anchor units, weight 50 / 0.1**2 = 5000; dh: 0.02, 1250.
  assert "dy: Huber bend 0.01 anchor units, weight 5000" in message
  assert "dh: Huber bend 0.02 anchor units, weight 1250" in message
  assert "box_variances=[1, 1, 1, 1]" in message and "huber_delta=1.0" in message
  # Both consistent conventions validate.
  config_lib.config_from_dict({})  # defaults: Model Garden
  config_lib.config_from_dict({"model": {"box_variances": [0.1, 0.1, 0.2, 0.2]},
                               "loss": {"huber_delta": 1.0, "box_loss_weight": 1.0}})
  config_lib.config_from_dict({"loss": {"box_loss": "giou", "box_loss_weight": 1.0}})


def test_effective_huber_settings_hand_case():
  got = config_lib.effective_huber_settings((0.1, 0.1, 0.2, 0.2), 1.0, 1.0)
  flat = [x for pair in got for x in pair]
  assert flat == pytest.approx([0.1, 100.0, 0.1, 100.0, 0.2, 25.0, 0.2, 25.0])
  assert config_lib.effective_huber_settings((1, 1, 1, 1), 0.1, 50.0) == [(0.1, 50.0)] * 4


def test_overrides_are_parsed_and_validated():
  config = config_lib.apply_overrides(config_lib.ExperimentConfig(), [
      "train.total_steps=1000", "postprocess.nms_mode=global_soft",
      "model.input_size=[512, 512]", "train.jit_compile=true"])
  assert config.train.total_steps == 1000
  assert config.postprocess.nms_mode == "global_soft"
  assert config.model.input_size == (512, 512)
  assert config.train.jit_compile is True
  with pytest.raises(config_lib.ConfigError, match="unknown config key train.totl_steps"):
    config_lib.apply_overrides(config, ["train.totl_steps=3"])
  with pytest.raises(config_lib.ConfigError, match="key=value"):
    config_lib.apply_overrides(config, ["train.total_steps"])


def test_invalid_json_names_the_file(tmp_path):
  path = tmp_path / "broken.json"
  path.write_text('{"model": {')
  with pytest.raises(config_lib.ConfigError, match="broken.json: not valid JSON"):
    config_lib.load_config(str(path))


def test_check_num_classes_names_the_fix():
  config = config_lib.ExperimentConfig()
  config_lib.check_num_classes(config, 80)
  with pytest.raises(config_lib.ConfigError, match="set model.num_classes=5"):
    config_lib.check_num_classes(config, 5)


def test_json_is_sorted_and_stable():
  a = config_lib.config_to_json(config_lib.ExperimentConfig())
  assert a == config_lib.config_to_json(config_lib.config_from_dict(json.loads(a)))


def test_with_total_steps_scales_the_schedule_by_hand():
  config = config_lib.ExperimentConfig()  # 22500 steps, warm-up 500, boundaries 15000/20000
  short = config_lib.with_total_steps(config, 450)
  assert short.train.total_steps == 450
  assert short.optimizer.warmup_steps == 10  # 500 * 450 / 22500
  assert short.optimizer.boundaries == (300, 400)
  assert short.optimizer.decay_rates == config.optimizer.decay_rates
  assert (short.train.checkpoint_every, short.train.log_every) == (450, 100)
  assert config.train.total_steps == 22500  # not modified in place
  with pytest.raises(config_lib.ConfigError, match="continue steps"):
    config_lib.with_total_steps(config, 0)
