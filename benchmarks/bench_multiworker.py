"""Two training workers against one on this machine (MultiWorkerMirroredStrategy, loopback).

    .venv/bin/python benchmarks/bench_multiworker.py [--steps 14] [--write_markdown]

The same global batch, config and data: one process (MultiWorkerMirroredStrategy
with no TF_CONFIG: one replica), then two processes with a TF_CONFIG cluster
of a chief and a worker on loopback ports (two replicas; each reads half the
batch; gradients are all-reduced over gRPC every step). Seconds per step are
the median execution time of the steps after the first two (tracing and
warm-up excluded). Both workers share the machine's 2 cores, so this measures
the price of the distribution (all-reduce, cluster start-up, the cores split
between two processes), the figure to set against real multi-host speed-ups.
Writes the "## Multi-worker training" section of BENCHMARKS.md with --write_markdown.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

HEADING = "## Multi-worker training"
OVERRIDES = ["model.input_size=[128,128]", "train.global_batch_size=8", "train.eval_every=0",
             "train.steps_per_execution=1", "train.log_every=1", "train.checkpoint_every=100000",
             "input.deterministic=true", "input.shuffle_buffer=1", "input.scale_min=1.0",
             "input.scale_max=1.0", "input.horizontal_flip=false", "optimizer.warmup_steps=0",
             "optimizer.boundaries=[]", "optimizer.decay_rates=[]"]


def worker_main(args) -> int:
  """One training process (TF_CONFIG, if any, from the environment)."""
  from retinanet import config as config_lib  # pylint: disable=g-import-not-at-top
  from retinanet import configs  # pylint: disable=g-import-not-at-top
  from retinanet.training import train_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.apply_overrides(configs.load_named_config("sample/tiny"),
                                      OVERRIDES + [f"train.total_steps={args.steps}"])
  strategy = train_lib.create_strategy("multi_worker_mirrored")
  result = train_lib.train(config, train_files=args.train_files, model_dir=args.model_dir,
                         strategy=strategy)
  if strategy.extended.should_checkpoint:
    with open(args.result, "w") as f:
      json.dump({"replicas": strategy.num_replicas_in_sync,
                 "history": [[s, v] for s, v in result.history]}, f)
  return 0


def _ports(count: int) -> List[int]:
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def run_cluster(num_workers: int, train_files: str, root: str, steps: int) -> Dict:
  """Starts num_workers processes of this script; returns the chief's result and wall time."""
  model_dir = os.path.join(root, f"model{num_workers}")
  result = os.path.join(root, f"result{num_workers}.json")
  command = [sys.executable, os.path.abspath(__file__), "--worker", f"--steps={steps}",
             f"--train_files={train_files}", f"--model_dir={model_dir}", f"--result={result}"]
  ports = _ports(num_workers)
  cluster = {"chief": [f"localhost:{ports[0]}"],
             "worker": [f"localhost:{p}" for p in ports[1:]]}
  tasks = [{"type": "chief", "index": 0}] + [{"type": "worker", "index": i}
                                             for i in range(num_workers - 1)]
  start = time.time()
  procs = []
  for task in tasks:
    env = dict(os.environ, PYTHONPATH=common.ROOT)
    env.pop("TF_CONFIG", None)
    if num_workers > 1:
      env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": task})
    procs.append(subprocess.Popen(command, cwd=common.ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True))
  for proc in procs:
    out, _ = proc.communicate(timeout=1800)
    if proc.returncode:
      raise SystemExit(f"worker failed ({proc.returncode}):\n{out[-4000:]}")
  with open(result) as f:
    data = json.load(f)
  data["wall_seconds"] = time.time() - start
  return data


def step_seconds(history: List) -> float:
  import numpy as np  # pylint: disable=g-import-not-at-top
  return float(np.median([v["execution_time"] for s, v in history if s > 2]))


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=14)
  parser.add_argument("--write_markdown", action="store_true")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--train_files", help=argparse.SUPPRESS)
  parser.add_argument("--model_dir", help=argparse.SUPPRESS)
  parser.add_argument("--result", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    return worker_main(args)
  start, load_start = time.time(), common.load_average()
  with tempfile.TemporaryDirectory() as root:
    files = common.write_records(root, (128, 128), 64)   # one TFRecord file
    one = run_cluster(1, files, root, args.steps)
    two = run_cluster(2, files, root, args.steps)
  t1, t2 = step_seconds(one["history"]), step_seconds(two["history"])
  text = "\n".join([
      HEADING, "",
      f"Command: `python benchmarks/bench_multiworker.py --write_markdown` "
      f"({time.time() - start:.0f} s in all). Machine: {common.machine_description()}, shared: "
      f"load average {common.format_load(load_start)} at the start, "
      f"{common.format_load(common.load_average())} at the end.", "",
      "`sample/tiny` at 128x128, global batch 8, the same data (one TFRecord file: each of "
      "two workers reads every other record; no shuffle or augmentation, so both runs see "
      "the same global batches), MultiWorkerMirroredStrategy in both runs; "
      "one process, then a chief and a worker on loopback ports (TF_CONFIG), both on this "
      f"machine's cores. s/step: median over steps 3..{args.steps}.", "",
      "| Workers | Replicas | s/step | images/s | Wall s (start-up included) |",
      "|---|---|---|---|---|",
      f"| 1 | {one['replicas']} | {t1:.3f} | {8 / t1:.1f} | {one['wall_seconds']:.0f} |",
      f"| 2 | {two['replicas']} | {t2:.3f} | {8 / t2:.1f} | {two['wall_seconds']:.0f} |", "",
      f"Two workers take {t2 / t1:.2f}x the time per step of one ({(t2 - t1) * 1e3:+.0f} ms per "
      "step: gradient all-reduce over gRPC plus two processes sharing two cores). Losses are not "
      "compared here: sample/tiny's batch norm uses per-replica statistics, so two replicas "
      "of 4 images differ from one of 8 by design; equality with frozen batch norm is what "
      "tests/test_training_multiworker.py asserts. On real hosts each worker has its own "
      "accelerators, so the step time should stay near one worker's while the global batch "
      "doubles; this overhead is the number to compare against.", ""])
  common.publish(text, HEADING, args.write_markdown)
  return 0


if __name__ == "__main__":
  sys.exit(main())
