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
])
def test_cross_field_checks(data, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.config_from_dict(data)


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
