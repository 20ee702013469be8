"""Files -> batched datasets: sharding, determinism, eval completeness, config wiring."""
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from retinanet import config as config_lib
from retinanet.dataloader import input_reader, parser
from retinanet.ops import anchors as anchors_lib
from retinanet import task
from tests.test_dataloader_decoder import make_example, random_image, write_dataset, write_tfrecord

SIZE = (64, 64)


def _train_parser():
  anchors = anchors_lib.generate_anchors(SIZE, 3, 6, 4.0, 1, (1.0,))
  return parser.TrainParser(output_size=SIZE, anchors=anchors, positive_iou=0.5,
                            negative_iou=0.4, box_variances=(0.1, 0.1, 0.2, 0.2), max_instances=4)


def _eval_parser():
  return parser.EvalParser(output_size=SIZE, max_instances=4)


def _context(num_pipelines, pipeline_id, replicas=None):
  return tf.distribute.InputContext(num_input_pipelines=num_pipelines,
                                    input_pipeline_id=pipeline_id,
                                    num_replicas_in_sync=replicas or num_pipelines)


def _valid_ids(dataset):
  ids = []
  for _, labels in dataset:
    ids.extend(labels["image_id"].numpy()[labels["is_valid"].numpy()].tolist())
  return ids


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
  """4 GZIP files of 3 images each (ids 1..12)."""
  return write_dataset(str(tmp_path_factory.mktemp("shards")), num_files=4, per_file=3)


def test_train_batches_have_static_shapes(shards):
  dataset = input_reader.build_dataset(shards, parser=_train_parser(), is_training=True,
                                       global_batch_size=4, shuffle_buffer=8)
  images, labels = dataset.element_spec
  num_anchors = anchors_lib.generate_anchors(SIZE, 3, 6, 4.0, 1, (1.0,)).shape[0]
  assert images.shape.as_list() == [4, 64, 64, 3] and images.dtype == tf.float32
  assert labels["class_targets"].shape.as_list() == [4, num_anchors]
  assert labels["box_targets"].shape.as_list() == [4, num_anchors, 4]
  assert labels["match_state"].shape.as_list() == [4, num_anchors]
  assert labels["num_positives"].shape.as_list() == [4]
  assert labels["gt_boxes"].shape.as_list() == [4, 4, 4]
  # Training repeats: 12 images give more than 3 batches of 4.
  assert len(list(dataset.take(5))) == 5


def _first_batches(shards, seed, deterministic, n=3):
  dataset = input_reader.build_dataset(shards, parser=_train_parser(), is_training=True,
                                       global_batch_size=4, shuffle_buffer=6, cycle_length=2,
                                       deterministic=deterministic, seed=seed)
  return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in dataset.take(n)]


def _same(a, b):
  flat_a, flat_b = tf.nest.flatten(a), tf.nest.flatten(b)
  return all(np.array_equal(x, y) for x, y in zip(flat_a, flat_b))


def test_deterministic_mode_gives_identical_batches_twice(shards):
  first = _first_batches(shards, seed=5, deterministic=True)
  second = _first_batches(shards, seed=5, deterministic=True)
  assert _same(first, second)
  other_seed = _first_batches(shards, seed=6, deterministic=True)
  assert not _same(first, other_seed)
  # Without deterministic mode each build draws fresh augmentation seeds.
  assert not _same(_first_batches(shards, seed=5, deterministic=False),
                   _first_batches(shards, seed=5, deterministic=False))


def test_file_sharding_gives_disjoint_complete_shards(shards, caplog):
  parts = [input_reader.shard_files(shards, 3, i) for i in range(3)]
  assert sorted(sum(parts, [])) == sorted(shards)
  assert all(not set(a) & set(b) for i, a in enumerate(parts) for b in parts[i + 1:])
  ids = []
  with caplog.at_level(logging.WARNING, logger=input_reader.__name__):
    for pipeline_id in range(2):
      dataset = input_reader.build_dataset(
          shards, parser=_eval_parser(), is_training=False, global_batch_size=4,
          input_context=_context(2, pipeline_id))
      pipeline_ids = _valid_ids(dataset)
      assert len(pipeline_ids) == 6
      ids.append(set(pipeline_ids))
  assert not ids[0] & ids[1] and ids[0] | ids[1] == set(range(1, 13))
  assert "[Worker ID 1] Using 2/4 eval tfrecords" in caplog.text


def test_fewer_files_than_pipelines_shards_records(tmp_path):
  path = write_dataset(str(tmp_path), num_files=1, per_file=5)
  ids = [set(_valid_ids(input_reader.build_dataset(path, parser=_eval_parser(), is_training=False,
                                                   global_batch_size=6,
                                                   input_context=_context(3, i))))
         for i in range(3)]
  assert sum(len(s) for s in ids) == 5 and set().union(*ids) == set(range(1, 6))


def test_per_replica_batch_size_from_input_context(shards):
  dataset = input_reader.build_dataset(shards, parser=_train_parser(), is_training=True,
                                       global_batch_size=8,
                                       input_context=_context(2, 0, replicas=4))
  assert dataset.element_spec[0].shape.as_list()[0] == 2


def test_eval_sees_every_image_once_with_a_padded_last_batch(tmp_path):
  paths = write_dataset(str(tmp_path), num_files=2, per_file=3)
  paths.append(write_tfrecord(str(tmp_path / "extra.gz"),
                              [make_example(random_image(30, 40), image_id=7, fmt="png")]))
  dataset = input_reader.build_dataset(paths, parser=_eval_parser(), is_training=False,
                                       global_batch_size=3)
  batches = list(dataset)
  assert len(batches) == 3
  assert all(images.shape[0] == 3 for images, _ in batches)
  assert sorted(_valid_ids(dataset)) == list(range(1, 8))
  last_images, last = batches[-1]
  np.testing.assert_array_equal(last["is_valid"].numpy(), [True, False, False])
  np.testing.assert_array_equal(last["image_id"].numpy()[1:], [-1, -1])
  np.testing.assert_array_equal(last["gt_classes"].numpy()[1:], -1)
  assert not last_images.numpy()[1:].any()
  # Padding rows keep usable geometry: mapping a whole batch back never divides by 0.
  np.testing.assert_array_equal(last["scale"].numpy()[1:], 1.0)
  np.testing.assert_array_equal(last["original_size"].numpy()[1:], [SIZE, SIZE])
  assert {k: v.shape for k, v in last.items()} == {k: v.shape for k, v in batches[0][1].items()}

  unpadded = input_reader.build_dataset(paths, parser=_eval_parser(), is_training=False,
                                        global_batch_size=3, pad_last_batch=False)
  assert [images.shape[0] for images, _ in unpadded] == [3, 3, 1]


def test_uncompressed_files_and_bad_inputs(tmp_path):
  plain = str(tmp_path / "plain.tfrecord")
  with tf.io.TFRecordWriter(plain) as w:
    w.write(make_example(random_image(20, 20), image_id=3).SerializeToString())
  dataset = input_reader.build_dataset(plain, parser=_eval_parser(), is_training=False,
                                       global_batch_size=1)
  assert _valid_ids(dataset) == [3]
  gz = write_dataset(str(tmp_path), num_files=1, per_file=1)[0]
  with pytest.raises(ValueError, match="mix .gz"):
    input_reader.build_dataset([plain, gz], parser=_eval_parser(), is_training=False,
                               global_batch_size=1)
  missing = os.path.join(str(tmp_path), "Split-train", "*")
  with pytest.raises(FileNotFoundError, match="Split-train"):
    input_reader.build_dataset(missing, parser=_eval_parser(), is_training=False,
                               global_batch_size=1)
  with pytest.raises(ValueError, match="pad_last_batch"):
    input_reader.build_dataset(gz, parser=_train_parser(), is_training=True, global_batch_size=1,
                               pad_last_batch=True)
  with pytest.raises(ValueError, match="padding_element"):
    input_reader.build_dataset(gz, parser=lambda d, s: (d["image"], {}), is_training=False,
                               global_batch_size=1)


def test_task_inputs_with_distribute_datasets_from_function(shards):
  config = config_lib.apply_overrides(config_lib.ExperimentConfig(), [
      "model.input_size=[128,128]", "model.num_classes=3", "train.global_batch_size=2",
      "eval.batch_size=5", "input.shuffle_buffer=4", "optimizer.warmup_steps=1",
      "train.total_steps=10"])
  strategy = tf.distribute.get_strategy()
  train = strategy.distribute_datasets_from_function(
      task.RetinaNetTask(config).build_inputs(shards, is_training=True))
  images, labels = next(iter(train))
  layout = anchors_lib.Anchors((128, 128), 3, 7, 4.0, 3, (0.5, 1.0, 2.0))
  assert images.shape == (2, 128, 128, 3)
  assert labels["box_targets"].shape == (2, layout.num_anchors, 4)
  assert labels["gt_boxes"].shape == (2, config.input.max_instances, 4)
  evaluation = task.RetinaNetTask(config).build_inputs(shards, is_training=False)(None)
  assert sorted(_valid_ids(evaluation)) == list(range(1, 13))
