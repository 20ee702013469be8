"""Continuous evaluation: a separate process that evaluates each new checkpoint once.

    python -m retinanet.evaluation.continuous --checkpoint_dir MODEL_DIR/checkpoint \
        --config MODEL_DIR/config.json --label_map MODEL_DIR/label_map.json \
        --file_pattern 'EXAMPLES/Split-val/*' --output_dir EVAL_DIR [--timeout 3600] \
        [--ground_truth EXAMPLES/ground_truth/instances_val.json]

Results go to `<output_dir>/eval_results.jsonl` (one line per checkpoint) and
TensorBoard scalars under `<output_dir>/`. A restarted evaluator reads that file
and never evaluates a checkpoint twice. It stops after evaluating a checkpoint
at or past `train.total_steps`, or when no new checkpoint appears for
`timeout` seconds.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Set

import tensorflow as tf

from retinanet import console

logger = logging.getLogger(__name__)
RESULTS_FILE = "eval_results.jsonl"
_STEP = re.compile(r"-(\d+)$")


def checkpoint_step(prefix: str) -> int:
  """The global step in a CheckpointManager prefix (`.../ckpt-1200` -> 1200)."""
  match = _STEP.search(prefix)
  if not match:
    raise ValueError(f"checkpoint prefix {prefix} does not end in -<step>")
  return int(match.group(1))


def read_results(output_dir: str) -> List[Dict]:
  path = os.path.join(output_dir, RESULTS_FILE)
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _append_result(output_dir: str, record: Dict) -> None:
  path = os.path.join(output_dir, RESULTS_FILE)
  existing = ""
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      existing = f.read()
  # Rewrite then rename: a crash never leaves a half-written line (and gs:// has no append).
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(existing + json.dumps(record, sort_keys=True) + "\n")
  tf.io.gfile.rename(tmp, path, overwrite=True)


def watch(checkpoint_dir: str, evaluate_fn: Callable[[str], Dict[str, float]], *,
          output_dir: str, final_step: int, timeout_seconds: float,
          poll_seconds: float = 5.0, list_checkpoints: Optional[Callable[[str], List[str]]] = None,
          sleep: Callable[[float], None] = time.sleep,
          clock: Callable[[], float] = time.monotonic) -> List[Dict]:
  """Evaluates each complete checkpoint of `checkpoint_dir` exactly once, oldest first.

  Returns the records written by this call. `evaluate_fn(prefix) -> metrics`.
  """
  from retinanet.training import checkpointing  # pylint: disable=g-import-not-at-top
  list_checkpoints = list_checkpoints or (
      lambda d: [p for p in reversed(checkpointing.checkpoints_newest_first(d))
                 if checkpointing.is_complete(p)])
  tf.io.gfile.makedirs(output_dir)
  done: Set[str] = {os.path.basename(r["checkpoint"]) for r in read_results(output_dir)}
  writer = tf.summary.create_file_writer(output_dir)
  written: List[Dict] = []
  last_new = clock()
  while True:
    pending = [p for p in list_checkpoints(checkpoint_dir) if os.path.basename(p) not in done]
    for prefix in pending:
      step = checkpoint_step(prefix)
      logger.info("Evaluating checkpoint %s (step %d)", prefix, step)
      start = time.time()
      metrics = evaluate_fn(prefix)
      record = {"checkpoint": prefix, "step": step, "metrics": metrics,
                "seconds": round(time.time() - start, 2), "time": time.time()}
      _append_result(output_dir, record)
      with writer.as_default(step=step):
        for name, value in metrics.items():
          tf.summary.scalar(f"eval/{name}", value)
      writer.flush()
      done.add(os.path.basename(prefix))
      written.append(record)
      last_new = clock()
      if step >= final_step:
        logger.info("Reached the final step %d: continuous evaluation done", final_step)
        return written
    if clock() - last_new > timeout_seconds:
      logger.info("No new checkpoint in %s for %.0f s: stopping", checkpoint_dir, timeout_seconds)
      return written
    sleep(poll_seconds)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint_dir", required=True)
  parser.add_argument("--config", required=True, help="The training config JSON.")
  parser.add_argument("--label_map", required=True, help="label_map.json of the dataset.")
  parser.add_argument("--file_pattern", required=True, help="TFRecords of the eval split.")
  parser.add_argument("--ground_truth", default="",
                      help="COCO annotations JSON of the eval split (the data stage writes "
                           "EXAMPLES/ground_truth/instances_val.json); default: the records.")
  parser.add_argument("--output_dir", required=True)
  parser.add_argument("--timeout", type=float, default=3600.0,
                      help="Stop after this many seconds without a new checkpoint.")
  parser.add_argument("--poll_seconds", type=float, default=10.0)
  console.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname).1s] %(message)s")

  from retinanet import coco  # pylint: disable=g-import-not-at-top
  from retinanet import config as config_lib  # pylint: disable=g-import-not-at-top
  from retinanet import factory  # pylint: disable=g-import-not-at-top
  from retinanet.evaluation import coco_metrics, evaluate_model  # pylint: disable=g-import-not-at-top
  from retinanet.training import checkpointing  # pylint: disable=g-import-not-at-top

  config = config_lib.load_config(args.config)
  label_map = coco.load_label_map(args.label_map)
  model = factory.build_model(config.model)
  evaluator = evaluate_model.make_evaluator(label_map, args.ground_truth or None,
                                            config.eval.coco_backend)
  writer = tf.summary.create_file_writer(args.output_dir)

  def evaluate_fn(prefix: str) -> Dict[str, float]:
    checkpointing.restore_model(model, prefix)
    result = evaluate_model.evaluate(model, config, args.file_pattern, label_map,
                                     evaluator=evaluator)
    # PR curves and images beside watch()'s scalars (another event file, same directory).
    evaluate_model.write_eval_summaries(writer, checkpoint_step(prefix), result,
                                        file_pattern=args.file_pattern,
                                        ground_truth_path=args.ground_truth or None,
                                        label_map=label_map)
    return coco_metrics.scalar_metrics({**result.metrics, "per_class": result.per_class_ap})

  watch(args.checkpoint_dir, evaluate_fn, output_dir=args.output_dir,
        final_step=config.train.total_steps, timeout_seconds=args.timeout,
        poll_seconds=args.poll_seconds)
  return 0


if __name__ == "__main__":
  sys.exit(main())
