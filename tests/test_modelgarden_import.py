"""Importing a TF Model Garden RetinaNet checkpoint: forward equality with Model Garden's own
outputs on the committed reduced fixture (written by benchmarks/modelgarden_import_side.py in
Model Garden's venv), clear errors on mismatches, and a model directory that loads."""
import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from retinanet import factory
from retinanet.modeling import modelgarden_import as mgi
from retinanet import task

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "modelgarden_retinanet")
CHECKPOINT = os.path.join(FIXTURE, "ckpt")
INPUT_SIZE = (128, 128)


@pytest.fixture(scope="module")
def reference():
  return dict(np.load(os.path.join(FIXTURE, "outputs.npz")))


def _reduced_config(**changes):
  config = mgi.modelgarden_model_config(width_multiplier=0.125, fpn_channels=16,
                                        head_channels=16, head_convs=2, input_size=INPUT_SIZE)
  return dataclasses.replace(config, **changes)


def _max_differences(model, reference):
  classes, boxes = model.call_per_level(tf.constant(reference["images"]), training=False)
  return {level: (float(np.abs(classes[level].numpy() - reference[f"cls_{level}"]).max()),
                  float(np.abs(boxes[level].numpy() - reference[f"box_{level}"]).max()))
          for level in range(3, 8)}


def test_the_fixture_is_model_gardens_architecture():
  with open(os.path.join(FIXTURE, "model_config.json")) as f:
    mg = json.load(f)
  assert mg["backbone"]["resnet"]["model_id"] == 50
  assert (mg["min_level"], mg["max_level"], mg["num_classes"]) == (3, 7, 91)
  assert mg["anchor"] == {"anchor_size": 4.0, "aspect_ratios": [0.5, 1.0, 2.0], "num_scales": 3}
  assert mg["input_size"][:2] == list(INPUT_SIZE)
  inferred = mgi.infer_model_config(CHECKPOINT, INPUT_SIZE)
  assert inferred == _reduced_config()


def test_imported_outputs_equal_model_gardens_at_every_level(reference):
  model = factory.build_model(_reduced_config())
  counts = mgi.load_into(model, CHECKPOINT)
  # Model Garden's count of the same network (benchmarks/modelgarden_import_side.py).
  assert counts["variables"] == 393 and counts["parameters"] == 534463
  differences = _max_differences(model, reference)
  # The same float32 ops in the same order: equal to rounding (measured: exactly 0).
  for level, (cls, box) in differences.items():
    assert cls <= 1e-5 and box <= 1e-5, (level, cls, box)
  assert max(np.abs(reference["cls_3"]).max(), np.abs(reference["box_3"]).max()) > 0.1


def test_padding_is_what_makes_it_exact(reference):
  """The check can fail: with symmetric padding the same weights give other outputs."""
  model = factory.build_model(_reduced_config(padding="symmetric"))
  mgi.load_into(model, CHECKPOINT)
  assert max(max(d) for d in _max_differences(model, reference).values()) > 1e-3


def test_a_mismatched_model_is_refused_naming_the_variables():
  wider = _reduced_config(fpn=dataclasses.replace(_reduced_config().fpn, num_channels=32))
  with pytest.raises(mgi.CheckpointMismatchError,
                     match=r"shapes differ, first: \['model/_decoder/layer_with_weights-0/"
                           r"kernel/\.ATTRIBUTES/VARIABLE_VALUE: checkpoint \[1, 1, 256, 16\] vs "
                           r"model \[1, 1, 256, 32\]"):
    mgi.load_into(factory.build_model(wider), CHECKPOINT)
  deeper = _reduced_config(head=dataclasses.replace(_reduced_config().head, num_convs=3))
  with pytest.raises(mgi.CheckpointMismatchError,
                     match=r"variables missing from the checkpoint, first: "
                           r"\['model/_head/_cls_convs/2/kernel"):
    mgi.load_into(factory.build_model(deeper), CHECKPOINT)
  shallower = _reduced_config(head=dataclasses.replace(_reduced_config().head, num_convs=1))
  with pytest.raises(mgi.CheckpointMismatchError,
                     match=r"checkpoint variables have no place in the model"):
    mgi.load_into(factory.build_model(shallower), CHECKPOINT)


def test_not_a_model_garden_checkpoint(tmp_path):
  prefix = tf.train.Checkpoint(v=tf.Variable(1.0)).write(str(tmp_path / "other"))
  with pytest.raises(mgi.CheckpointMismatchError, match="not a Model Garden RetinaNet checkpoint"):
    mgi.infer_model_config(prefix)


def test_import_writes_a_model_dir_that_loads_with_the_coco_label_map(tmp_path, reference):
  out = str(tmp_path / "imported")
  info = mgi.import_checkpoint(CHECKPOINT, out, input_size=INPUT_SIZE)
  assert info["variables"] == 393
  model, config, label_map, _ = task.load_model_dir(out)
  assert config.model == _reduced_config()
  assert label_map.num_classes == 91 and label_map.category_ids[1] == 1
  assert label_map.names[1] == "person" and label_map.names[90] == "toothbrush"
  assert label_map.names[12] == "unused_12" and label_map.names[0] == "background"
  assert max(max(d) for d in _max_differences(model, reference).values()) <= 1e-5


def test_shipped_finetune_config_is_model_gardens_published_network():
  """With 91 classes it has exactly the trainable parameter count Model Garden publishes for
  retinanet_resnetfpn_coco (34,091,159; docs/model-size.md)."""
  from retinanet import configs
  config = configs.load_named_config("finetune/retinanet-r50-640-modelgarden-b16")
  model_config = dataclasses.replace(config.model, num_classes=91)
  assert model_config == mgi.modelgarden_model_config(config.model)
  model = factory.build_model(dataclasses.replace(
      model_config, backbone=dataclasses.replace(model_config.backbone,
                                                 freeze_stem_and_first_stage=False)))
  assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == 34_091_159


IMAGENET_FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "modelgarden_resnet_imagenet")


def test_imagenet_resnet_backbone_import_gives_model_gardens_features():
  """A Model Garden ImageNet classifier's ResNet-50 (depth multiplier 0.125, written by
  modelgarden_import_side.py --size imagenet-reduced) as backbone initialization."""
  reference = np.load(os.path.join(IMAGENET_FIXTURE, "outputs.npz"))
  config = dataclasses.replace(_reduced_config(), num_classes=5)
  config = dataclasses.replace(config, backbone=dataclasses.replace(
      config.backbone, init_checkpoint="modelgarden:" + os.path.join(IMAGENET_FIXTURE, "ckpt")))

  def max_difference(norm_epsilon):
    model = factory.build_model(dataclasses.replace(
        config, norm=dataclasses.replace(config.norm, epsilon=norm_epsilon)))
    assert task.initialize_backbone(model, config.backbone.init_checkpoint)
    features = model.backbone(tf.constant(reference["images"]), training=False)
    return max(np.abs(features[l].numpy() - reference[f"c{l}"]).max() for l in (3, 4, 5))

  # Model Garden's ImageNet classifiers use batch-norm epsilon 1e-5 (not stored in the
  # checkpoint): with it the features are Model Garden's exactly.
  assert max_difference(1e-5) <= 1e-5
  assert min(np.abs(reference[f"c{l}"]).max() for l in (3, 4, 5)) > 0.1
  # Its RetinaNet configs, like ours, train on top with epsilon 1e-3: a small, expected shift.
  assert 1e-4 < max_difference(1e-3) < 0.1
  # A RetinaNet checkpoint holds a ResNet too: its backbone part loads the same way.
  counts = mgi.load_backbone_into(factory.build_model(_reduced_config()).backbone, CHECKPOINT)
  assert counts["variables"] == 265


def test_backbone_import_refuses_another_depth():
  config = dataclasses.replace(_reduced_config(), backbone=dataclasses.replace(
      _reduced_config().backbone, depth=101))
  with pytest.raises(mgi.CheckpointMismatchError, match="variables missing from the checkpoint"):
    mgi.load_backbone_into(factory.build_model(config).backbone,
                           os.path.join(IMAGENET_FIXTURE, "ckpt"))


def test_postprocessing_inputs_equal_model_gardens(reference):
  """What enters NMS: our anchors and box decoding on the raw box outputs give Model Garden's
  decoded boxes (its anchor.Anchor + box_ops.decode_boxes), level by level."""
  from retinanet.ops import box_coder
  config = _reduced_config()
  anchors = factory.build_anchors(config).split_by_level(factory.build_anchors(config).boxes())
  for level in range(3, 8):
    raw = reference[f"box_{level}"]
    ours = box_coder.decode(tf.reshape(raw, [raw.shape[0], -1, 4]), anchors[level][None],
                            config.box_variances).numpy()
    np.testing.assert_allclose(ours, reference[f"decoded_{level}"], rtol=0, atol=1e-4)
