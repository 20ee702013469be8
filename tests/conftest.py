"""Test configuration: Keras 2, TensorFlow threads per worker, two logical CPUs, scheduling.

`make test` runs the suite on pytest-xdist workers (`-n 2 --dist loadgroup`).
Every test module is one xdist group, so its module fixtures are built once;
modules that must share more (a run, a port) name a common group with
`pytest.mark.xdist_group`. The end-to-end runs (marked `e2e`) are scheduled
first: they are the longest chain.

Each worker gets `cores // workers` TensorFlow threads (TF_NUM_INTRAOP_THREADS /
TF_NUM_INTEROP_THREADS, inherited by the processes tests start), so that two
workers do not fight over two cores; set them in the environment to override.
The CPU is split into two logical devices before TensorFlow initializes, so
multi-replica cases (MirroredStrategy) run in the worker's own process.
"""
import os

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Logical CPU devices of every test process (tests/test_training_distributed.py).
LOGICAL_CPUS = 2


def _threads_per_worker() -> int:
  workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
  return max(1, (os.cpu_count() or 1) // workers)


def _is_xdist_controller(config) -> bool:
  return bool(getattr(config.option, "numprocesses", None)) and \
      "PYTEST_XDIST_WORKER" not in os.environ


def pytest_configure(config):
  if _is_xdist_controller(config):
    return  # the controller runs no test: no TensorFlow here
  threads = str(_threads_per_worker())
  os.environ.setdefault("TF_NUM_INTRAOP_THREADS", threads)
  os.environ.setdefault("TF_NUM_INTEROP_THREADS", threads)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  cpus = tf.config.list_physical_devices("CPU")
  tf.config.set_logical_device_configuration(
      cpus[0], [tf.config.LogicalDeviceConfiguration()] * LOGICAL_CPUS)


def _group_and_rank(item):
  """(xdist group, rank): the module unless the test names a group; e2e runs first."""
  marks = [m.args[0] if m.args else m.kwargs.get("name") for m in
           item.iter_markers("xdist_group")]
  group = marks[0] if marks else item.module.__name__.rsplit(".", 1)[-1]
  return group, (0 if item.get_closest_marker("e2e") else 1)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
  """Groups every test by module (or its named group) and puts the e2e groups first.

  Runs before xdist's own hook (conftest hooks run first), which appends the group
  to the node id; with `--no-loadscope-reorder` the groups are then handed out in
  this order.
  """
  del config
  ranks = {}
  for item in items:
    group, rank = _group_and_rank(item)
    if not any(True for _ in item.iter_markers("xdist_group")):
      item.add_marker(pytest.mark.xdist_group(group))
    ranks[group] = min(rank, ranks.get(group, rank))
  order = {group: i for i, group in enumerate(dict.fromkeys(_group_and_rank(i)[0] for i in items))}
  items.sort(key=lambda item: (ranks[_group_and_rank(item)[0]], order[_group_and_rank(item)[0]]))


@pytest.fixture(scope="session")
def shared_records(tmp_path_factory):
  """fn(num_images=16, image_size=(128, 128), seed=0, num_shards=2) -> TFRecord glob of
  generated sample images (tests/test_training_fixtures.write_sample_records), written
  once per session and argument set. Read them; never write next to them."""
  from tests.test_training_fixtures import write_sample_records  # pylint: disable=g-import-not-at-top
  written = {}

  def records(num_images=16, image_size=(128, 128), seed=0, num_shards=2):
    key = (num_images, tuple(image_size), seed, num_shards)
    if key not in written:
      directory = tmp_path_factory.mktemp("records")
      written[key] = write_sample_records(str(directory), num_images=num_images,
                                          image_size=tuple(image_size), seed=seed,
                                          num_shards=num_shards)
    return written[key]

  return records
