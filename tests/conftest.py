"""Test configuration: TensorFlow threads per worker, two logical CPUs, scheduling.

`make test` runs the suite on two pytest-xdist workers, a whole test module at a
time (`--dist loadscope`), so module fixtures are built once and tests that share
a run, a port or a directory share a module. The end-to-end runs (marked `e2e`)
are handed out first (RUN_FIRST): they are the longest chain. (xdist 3.8's
`loadgroup` does not group under pytest 9: it rewrites a node id attribute that
pytest 9 no longer reads.)

Each worker gets `cores // workers` TensorFlow threads (TF_NUM_INTRAOP_THREADS /
TF_NUM_INTEROP_THREADS, inherited by the processes tests start), so that two
workers do not fight over two cores; set them in the environment to override.
The CPU is split into two logical devices before TensorFlow initializes, so
multi-replica cases (MirroredStrategy) run in the worker's own process.
"""
import contextlib
import os

import pytest

import retinanet  # noqa: F401  (selects Keras 2 before anything loads TensorFlow)

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


# Modules handed out first, in this order; the others follow in collection order. xdist
# starts each worker with two modules and sends more only when one is nearly done, so
# the main-job chain (the longest) goes first with a module of a second beside it, and
# the other end-to-end runs go to the second worker. After them, the heaviest of the
# other modules, longest first (`make test-fast` durations, 2026-12-03: 90 s down to
# 15 s), so that the modules handed out last are short and the two workers finish
# together: a heavy module sent last kept one worker busy for 30 s after the other
# had finished.
RUN_FIRST = ("test_pipeline_e2e", "test_config", "test_pipeline_resume",
             "test_finetune_modelgarden", "test_continuous_training", "test_training_multiworker",
             "test_serving_portable", "test_backbone_init_through_trainer",
             "test_components_eval_push", "test_training_distributed",
             "test_modeling_mobilenet_v3", "test_training_loop", "test_training_precision",
             "test_data_convert", "test_training_checkpoint",
             "test_serving_export", "test_training_parity", "test_dataloader_reader")


def pytest_collection_modifyitems(items):
  """Orders whole modules (`--dist loadscope --no-loadscope-reorder`): RUN_FIRST, then the rest."""
  def module(item):
    return item.module.__name__.rsplit(".", 1)[-1]
  first_seen = {}
  for item in items:
    first_seen.setdefault(module(item), len(first_seen))
  rank = {name: i for i, name in enumerate(RUN_FIRST)}
  items.sort(key=lambda item: (rank.get(module(item), len(RUN_FIRST)), first_seen[module(item)]))


@contextlib.contextmanager
def validating_in_process():
  """The pre-push validation (the Evaluator's, or the Pusher's) in this process: the same
  checks and report as `start_in_fresh_process`, without a second interpreter's start-up.

  Every test runs this way (`_pre_push_validation_in_process`) except those marked
  `fresh_validation`. The fresh-process property itself is checked once through the
  components (test_components_eval_push.test_pusher_pushes_the_evaluated_bytes, whose
  module fixture runs before any function fixture) and once through `run_pipeline.py`
  (test_pipeline_resume, whose pipeline runs as a real command).
  """
  from retinanet.serving import validate  # pylint: disable=g-import-not-at-top

  class InProcess:
    """start_in_fresh_process's stand-in: the report, computed here when asked for."""

    def __init__(self, export_dir, timeout_seconds=None):
      del timeout_seconds
      self.export_dir = export_dir

    def report(self):
      return validate.validation_report(self.export_dir)

    def cancel(self):
      pass

  with pytest.MonkeyPatch.context() as patch:  # validate_in_fresh_process calls it too
    patch.setattr(validate, "start_in_fresh_process", InProcess)
    yield


@pytest.fixture(autouse=True)
def _pre_push_validation_in_process(request):
  """validating_in_process() around every test not marked `fresh_validation`: a fresh
  interpreter per validation cost 5-10 s of CPU in each pipeline run of the suite."""
  if request.node.get_closest_marker("fresh_validation"):
    yield
    return
  with validating_in_process():
    yield


@pytest.fixture
def build_trainer():
  """fn(cfg, files, model_dir, **kwargs) -> train_lib.build_trainer(...) on the default
  strategy, closed when the test ends (as train_lib.train closes its own), so that no later
  test's garbage collection waits on its input pipeline (Trainer.close)."""
  from retinanet.training import train_lib  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  trainers = []

  def build(cfg, files, model_dir, **kwargs):
    kwargs.setdefault("strategy", tf.distribute.get_strategy())
    trainers.append(train_lib.build_trainer(cfg, train_files=files, model_dir=str(model_dir),
                                            **kwargs))
    return trainers[-1]

  yield build
  for trainer in trainers:
    trainer.close()


@pytest.fixture(scope="session")
def shared_records(tmp_path_factory):
  """fn(num_images=16, image_size=(128, 128), seed=0, num_shards=2) -> TFRecord glob of
  generated sample images (tests/test_training_fixtures.write_sample_records), written
  once per worker and argument set. Read them; never write next to them."""
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
