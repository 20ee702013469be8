"""Every shipped config loads with strict keys, holds only what it changes against the
config tree's defaults, loads to its recorded values, matches its generator and its
name, and its schedule / batch / learning-rate arithmetic holds."""
import dataclasses
import hashlib
import json
import os
import re
import sys

import pytest
import tensorflow as tf

from retinanet import config as config_lib
from retinanet import configs, factory
from retinanet.configs import generate
from retinanet.ops.anchors import Anchors

COCO_TRAIN_IMAGES = 118_287
NAME = re.compile(r"coco/retinanet-r(\d+)-(\d+)-(\d+)x-b(\d+)-(v3-8|v3-32|8gpu)$")
# hardware tag -> (replicas, strategy, precision), as documented in generate.py
HARDWARE = {"v3-8": (8, "tpu", "mixed_bfloat16"), "v3-32": (32, "tpu", "mixed_bfloat16"),
            "8gpu": (8, "mirrored", "mixed_float16")}


def shipped_json_files():
  found = []
  for root, _, files in os.walk(configs.CONFIG_DIR):
    found += [os.path.join(root, f) for f in files if f.endswith(".json")]
  return sorted(found)


def test_the_expected_set_is_shipped():
  names = configs.list_configs()
  assert len(shipped_json_files()) == len(names) == 5 * 3 * 3 + 2 + 5
  assert "sample/tiny" in names and "sample/mobile" in names
  assert "coco/retinanet-mobilenetv3large-384-3x-b256-v3-32" in names
  assert "coco/retinanet-mobilenetv3large-384-3x-b64-8gpu" in names
  assert "coco/retinanet-r50-1024-v2recipe-b16-8gpu" in names
  assert "finetune/retinanet-r50-640-modelgarden-b16" in names
  assert "parity/retinanet-r50w0125-256-modelgarden" in names
  for depth in (18, 34, 50, 101, 152):
    for schedule in ("1x", "3x", "30x"):
      for batch, tag in ((64, "v3-8"), (256, "v3-32"), (64, "8gpu")):
        assert f"coco/retinanet-r{depth}-640-{schedule}-b{batch}-{tag}" in names


@pytest.mark.parametrize("path", shipped_json_files(), ids=os.path.basename)
def test_shipped_config_loads_strictly_and_is_named_by_its_path(path):
  config = config_lib.load_config(path)  # strict keys + validate()
  name = os.path.relpath(path, configs.CONFIG_DIR)[:-len(".json")].replace(os.sep, "/")
  assert config.name == name
  with open(path) as f:
    data = json.load(f)
  # Only what it changes against the config tree's defaults, and every such change.
  assert data == config_lib.config_overrides(config)


DIGESTS = os.path.join(os.path.dirname(__file__), "fixtures", "shipped_config_digests.json")


def _full_digest(config):
  text = json.dumps(config_lib.config_to_dict(config), sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_loaded_values_are_the_recorded_ones():
  """The full values each shipped file loads to (overrides + the tree's defaults) are the
  recorded ones, taken when the files still spelled out every key: a changed default or
  generator rule shows up here, per config. If intended, rewrite the record:
  .venv/bin/python tests/test_configs.py --update"""
  recorded = json.load(open(DIGESTS))
  loaded = {name: _full_digest(config_lib.load_config(configs.config_path(name)))
            for name in configs.list_configs()}
  assert {n for n in loaded if loaded[n] != recorded.get(n)} == set()
  assert sorted(recorded) == sorted(loaded)


def test_overrides_round_trip_and_diff_to_their_differences():
  tiny = config_lib.load_config(configs.config_path("sample/tiny"))
  assert config_lib.config_from_dict(config_lib.config_overrides(tiny)) == tiny
  assert config_lib.config_overrides(config_lib.ExperimentConfig()) == {
      "name": config_lib.ExperimentConfig().name}
  changed = dataclasses.replace(tiny, train=dataclasses.replace(tiny.train, total_steps=7))
  assert config_lib.config_overrides(changed, base=tiny) == {
      "name": tiny.name, "train": {"total_steps": 7}}


def test_shipped_files_are_what_the_generator_writes():
  generated = generate.all_configs()
  assert sorted(generated) == configs.list_configs()
  for name, config in generated.items():
    on_disk = config_lib.load_config(configs.config_path(name))
    assert config_lib.config_to_dict(on_disk) == config_lib.config_to_dict(config), (
        f"{name}.json is stale: run python -m retinanet.configs.generate")


def coco_configs():
  for name in configs.list_configs():
    match = NAME.match(name)
    if match:
      yield match, config_lib.load_config(configs.config_path(name))


def test_coco_configs_match_their_names_and_hardware():
  count = 0
  for match, c in coco_configs():
    depth, side, mult, batch, tag = match.groups()
    replicas, strategy, precision = HARDWARE[tag]
    assert c.model.backbone.depth == int(depth)
    assert c.model.input_size == (int(side), int(side))
    assert c.model.num_classes == 80
    assert c.train.global_batch_size == int(batch)
    assert (c.train.strategy, c.train.mixed_precision) == (strategy, precision)
    assert c.train.global_batch_size % replicas == 0
    assert c.eval.batch_size % replicas == 0
    assert c.model.norm.use_sync_bn
    count += 1
  assert count == 45


def test_schedule_arithmetic():
  for match, c in coco_configs():
    mult, batch = int(match.group(3)), int(match.group(4))
    t, o = c.train, c.optimizer
    # 1x = 90k iterations of 16 images (Detectron) = 12.17 COCO epochs.
    assert t.total_steps * batch == mult * 90_000 * 16
    epochs = t.total_steps * batch / COCO_TRAIN_IMAGES
    assert epochs == pytest.approx(12 * mult, rel=0.015)
    assert abs(o.boundaries[0] - t.total_steps * 2 / 3) <= 1
    assert abs(o.boundaries[1] - t.total_steps * 8 / 9) <= 1
    assert o.decay_rates == (0.1, 0.01)
    assert o.warmup_steps < o.boundaries[0]
    assert o.warmup_learning_rate < o.base_learning_rate
    assert t.checkpoint_every % t.steps_per_execution == 0
  one_x_64 = config_lib.load_config(configs.config_path("coco/retinanet-r50-640-1x-b64-v3-8"))
  assert one_x_64.train.total_steps == 22_500
  assert one_x_64.optimizer.boundaries == (15_000, 20_000)


def test_learning_rate_scales_linearly_with_batch():
  for match, c in coco_configs():
    mult, batch = int(match.group(3)), int(match.group(4))
    lr = c.optimizer.base_learning_rate
    if mult in (1, 3):  # paper: 0.01 per 16 images
      assert lr == pytest.approx(0.01 * batch / 16)
    else:  # Model Garden from scratch: 0.32 per 256 images
      assert lr == pytest.approx(0.32 * batch / 256)


def test_recipes():
  for match, c in coco_configs():
    depth, mult = int(match.group(1)), int(match.group(3))
    b = c.model.backbone
    if mult in (1, 3):  # ImageNet fine-tuning
      assert b.freeze_stem_and_first_stage and b.init_checkpoint.endswith(
          f"resnet{depth}-imagenet/ckpt")
      assert b.stride_in_1x1 == (depth >= 50)
      assert (c.model.fpn.p6_source, c.model.fpn.use_batch_norm,
              c.model.head.use_batch_norm) == ("c5", False, False)
    else:  # from scratch
      assert not b.freeze_stem_and_first_stage and b.init_checkpoint == ""
      assert (c.model.fpn.p6_source, c.model.fpn.use_batch_norm,
              c.model.head.use_batch_norm) == ("p5", True, True)
      assert (c.input.scale_min, c.input.scale_max) == (0.1, 2.0)


@pytest.mark.parametrize("path", shipped_json_files(), ids=os.path.basename)
def test_every_config_uses_one_box_loss_convention(path):
  c = config_lib.load_config(path)
  box = (c.model.box_variances, c.loss.huber_delta, c.loss.box_loss_weight)
  if c.name == "sample/tiny":  # the seed's scaled variant, with loss settings of its scale
    assert c.loss.box_loss == "huber" and box == ((0.1, 0.1, 0.2, 0.2), 1.0, 1.0)
  elif c.loss.box_loss == "huber":  # Model Garden: unscaled deltas, Huber delta 0.1, weight 50
    assert box == ((1.0, 1.0, 1.0, 1.0), 0.1, 50.0)
  else:
    assert (c.loss.box_loss, c.loss.box_loss_weight) == ("giou", 1.0)


def test_v2_recipe_config():
  c = configs.load_named_config("coco/retinanet-r50-1024-v2recipe-b16-8gpu")
  assert (c.loss.box_loss, c.model.head.use_group_norm, c.model.fpn.p6_source) == (
      "giou", True, "c5")
  assert not c.model.head.use_batch_norm and not c.model.backbone.freeze_batch_norm
  assert (c.optimizer.type, c.optimizer.weight_decay, c.loss.l2_weight_decay) == (
      "adamw", 0.05, 0.0)
  # 26 epochs of 16 images, 10x drops after epochs 16 and 22.
  epochs = lambda steps: steps * 16 / COCO_TRAIN_IMAGES  # noqa: E731
  assert epochs(c.train.total_steps) == pytest.approx(26, abs=1e-3)
  assert [epochs(b) for b in c.optimizer.boundaries] == pytest.approx([16, 22], abs=1e-3)


def test_lookup_by_name_or_path(tmp_path):
  name = "coco/retinanet-r50-640-3x-b256-v3-32"
  assert configs.config_path(name) == configs.config_path(name + ".json")
  assert configs.load_named_config(name).name == name
  copy = tmp_path / "mine.json"
  config = configs.load_named_config("sample/tiny")
  config.train.total_steps = 777
  config_lib.save_config(config, str(copy))
  assert configs.load_named_config(str(copy)).train.total_steps == 777
  with pytest.raises(config_lib.ConfigError, match="did you mean coco/retinanet-r50-640-3x"):
    configs.config_path("coco/retinanet-r50-640-3x-b256-v3-23")
  with pytest.raises(config_lib.ConfigError, match="no shipped config"):
    configs.load_named_config("nope")


def test_tiny_sample_config_builds_a_small_model():
  c = configs.load_named_config("sample/tiny")
  m = c.model
  assert (m.num_classes, m.backbone.depth, m.input_size) == (5, 18, (192, 192))
  assert m.backbone.width_multiplier == 0.5
  assert not m.backbone.freeze_stem_and_first_stage and m.backbone.init_checkpoint == ""
  assert c.train.strategy == "default" and c.train.mixed_precision == "float32"
  model = factory.build_model(m)
  out = model(tf.zeros([1, 192, 192, 3]), training=False)
  anchors = Anchors(image_size=m.input_size, min_level=m.fpn.min_level,
                    max_level=m.fpn.max_level, anchor_size=m.anchors.anchor_size,
                    scales_per_octave=m.anchors.scales_per_octave,
                    aspect_ratios=m.anchors.aspect_ratios)
  assert out["class_outputs"].shape == (1, anchors.num_anchors, 5)
  # Smallest anchor side 16 px (the smallest shapes), largest below the image side.
  sides = anchors.boxes().numpy()
  heights = sides[:, 2] - sides[:, 0]
  assert heights.min() == pytest.approx(16 / 2**0.5, rel=1e-5)  # aspect 2: h = 16 / sqrt(2)
  assert (m.anchors.anchor_size * 2**m.fpn.max_level * 2**(2 / 3)) < 1.1 * max(m.input_size)


@pytest.mark.parametrize("name", ["sample/mobile", "coco/retinanet-mobilenetv3large-384-3x-b64-8gpu"])
def test_mobile_configs_use_keras_conventions_and_light_heads(name):
  """Keras' input scaling and SAME padding (ImageNet weights map exactly), separable heads."""
  c = configs.load_named_config(name)
  m = c.model
  assert m.backbone.type == "mobilenet_v3_large" and m.padding == "same"
  assert tuple(c.input.mean_rgb) == tuple(c.input.stddev_rgb) == (127.5,) * 3
  assert m.head.separable and m.head.use_batch_norm
  model = factory.build_model(m)
  assert model.backbone.description == "MobileNetV3-Large x1"
  out = model(tf.zeros([1, *m.input_size, 3]), training=False)
  assert out["class_outputs"].shape[-1] == m.num_classes
  if name.startswith("coco/"):
    assert m.input_size == (384, 384)
    assert m.backbone.init_checkpoint == "pretrained/mobilenet_v3_large-imagenet/ckpt"


if __name__ == "__main__" and "--update" in sys.argv:
  with open(DIGESTS, "w") as f:
    json.dump({name: _full_digest(config_lib.load_config(configs.config_path(name)))
               for name in configs.list_configs()}, f, indent=1, sort_keys=True)
  print(f"wrote {DIGESTS}")
