"""tf.distribute strategy and mixed-precision policy from their config names.

Strategy names (config.train.strategy): "default" (the default strategy: CPU
or one GPU, no distribution), "one_device", "mirrored" (all local GPUs, or
the local logical CPUs when there is no GPU), "multi_worker_mirrored" (reads
TF_CONFIG), "tpu" (TPUClusterResolver; inputs are sharded per host by
`distribute_datasets_from_function`).
"""
from __future__ import annotations

import logging
from typing import Optional

import tensorflow as tf
import tf_keras

from retinanet import config as config_lib

logger = logging.getLogger(__name__)


def _mirrored_devices() -> Optional[list]:
  """All GPUs, or all logical CPUs when there are none (None = TF's choice)."""
  if tf.config.list_logical_devices("GPU"):
    return None
  cpus = tf.config.list_logical_devices("CPU")
  return [d.name for d in cpus] if len(cpus) > 1 else None


# Collective group and instance keys of one strategy object; TensorFlow caches collective
# parameters per key for the life of the process.
_COLLECTIVE_KEY_RANGE = 100000


def _new_collective_key_range(strategy_class) -> None:
  """Gives the next strategy of `strategy_class` keys no earlier one used.

  Every (MultiWorker)MirroredStrategy starts its collective keys at the class's base, so a
  second one in
  the same process (a notebook training twice, a test comparing strategies) would reuse
  the first one's keys and fail with a collective shape mismatch. TensorFlow's own
  strategy test combinations move the base the same way.
  """
  strategy_class._collective_key_base += _COLLECTIVE_KEY_RANGE  # pylint: disable=protected-access


def create_strategy(name: str, *, tpu: Optional[str] = None, tpu_zone: Optional[str] = None,
                    gcp_project: Optional[str] = None,
                    device: Optional[str] = None) -> tf.distribute.Strategy:
  """The tf.distribute.Strategy named `name` (one of config.STRATEGIES).

  tpu / tpu_zone / gcp_project locate the TPU for name="tpu" (tpu may be a
  name, a grpc:// address or "local"); device is the device of "one_device"
  (default: the first GPU, else the CPU).
  """
  if name == "default":
    strategy = tf.distribute.get_strategy()
  elif name == "one_device":
    if device is None:
      device = "/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0"
    strategy = tf.distribute.OneDeviceStrategy(device)
  elif name == "mirrored":
    _new_collective_key_range(tf.distribute.MirroredStrategy)
    strategy = tf.distribute.MirroredStrategy(devices=_mirrored_devices())
  elif name == "multi_worker_mirrored":
    # Every worker process creates its strategies in the same order: their keys agree.
    _new_collective_key_range(tf.distribute.MultiWorkerMirroredStrategy)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
  elif name == "tpu":
    resolver = tpu_cluster_resolver(tpu, tpu_zone, gcp_project)
    if tpu not in (None, "", "local"):
      tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    strategy = tf.distribute.TPUStrategy(resolver)
  else:
    raise ValueError(f"strategy {name!r} is not one of {', '.join(config_lib.STRATEGIES)} "
                     "(set train.strategy or the trainer's strategy parameter)")
  logger.info("Created the %s strategy (%s) with %d replicas", name, type(strategy).__name__,
              strategy.num_replicas_in_sync)
  return strategy


def tpu_cluster_resolver(tpu: Optional[str], zone: Optional[str] = None,
                         project: Optional[str] = None
                         ) -> tf.distribute.cluster_resolver.TPUClusterResolver:
  """The TPU of the flags: "local" on a TPU VM (Vertex's cloud-tpu machines), "" to let
  TensorFlow find it (TPU_NAME, Colab), a grpc://host:8470 address, or a Cloud TPU name (with zone / project, looked up through
  the Cloud TPU API; pods: the name of the whole slice, every host then runs one input
  pipeline, strategy.distribute_datasets_from_function)."""
  return tf.distribute.cluster_resolver.TPUClusterResolver(
      tpu=tpu or "", zone=zone or None,
      project=project or None)


def set_precision_policy(name: str) -> tf_keras.mixed_precision.Policy:
  """Sets tf_keras' global dtype policy ("float32", "mixed_float16", "mixed_bfloat16").

  Must run before the model is built: layers read the policy at construction.
  Under a mixed policy variables stay float32 and the model casts its
  outputs to float32, so losses, box decoding and NMS run in float32.
  """
  if name not in config_lib.PRECISIONS:
    raise ValueError(f"train.mixed_precision={name!r} is not one of "
                     f"{', '.join(config_lib.PRECISIONS)}")
  tf_keras.mixed_precision.set_global_policy(name)
  policy = tf_keras.mixed_precision.global_policy()
  logger.info("Precision policy %s (compute %s, variables %s)", policy.name,
              policy.compute_dtype, policy.variable_dtype)
  return policy
