"""Bit-identical training on one machine.

Seeds fix the initialization and the input (order and augmentation), but two
runs of the same seed still drifted apart (AP 0.654 and 0.618 on the main job):
with several inter-op threads TensorFlow runs independent ops concurrently, and
on CPU that changes floating-point results from the third step on (measured on
the sample config: one intra-op thread pool of 2 with 1 inter-op thread gives
the same weights after 60 steps in every run; 2 inter-op threads do not, with
or without `tf.config.experimental.enable_op_determinism`, which is not needed
on CPU and is left to the user on GPU). Running one op at a time costs about
5-10% of CPU training speed (BENCHMARKS.md); each op still uses every core.

The setting is process-wide and fixed once TensorFlow has run its first op, so
entry points call `run_ops_one_at_a_time` at start; the trainer calls it again
and warns when it comes too late.
"""
from __future__ import annotations

import logging
import os

import tensorflow as tf

logger = logging.getLogger(__name__)

SEQUENTIAL_INTER_OP_THREADS = 1


def run_ops_one_at_a_time() -> bool:
  """Makes TensorFlow run one op at a time; False (with a warning) if it is too late."""
  if os.environ.get("TF_NUM_INTEROP_THREADS") == str(SEQUENTIAL_INTER_OP_THREADS):
    return True  # read by TensorFlow when it initializes
  if tf.config.threading.get_inter_op_parallelism_threads() == SEQUENTIAL_INTER_OP_THREADS:
    return True
  try:
    tf.config.threading.set_inter_op_parallelism_threads(SEQUENTIAL_INTER_OP_THREADS)
  except RuntimeError:
    logger.warning(
        "train.deterministic: TensorFlow started before the trainer with parallel ops, so "
        "this run is seeded but not bit-identical to another. Set TF_NUM_INTEROP_THREADS=1 "
        "in the environment (run_pipeline.py does this itself).")
    return False
  return True
