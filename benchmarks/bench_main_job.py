"""The main job (README's `make run`) timed end to end, with the peak memory of its process tree.

    .venv/bin/python benchmarks/bench_main_job.py [--output_dir /tmp/main_job] [--write_markdown]

Runs `run_pipeline.py --runner=local` in a fresh output directory (sample data
generated, converted, trained, evaluated, pushed), samples the summed RSS of
the whole process tree (Beam workers included) every 0.5 s, and reads the AP
and the stage timings back from MLMD.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

HEADING = "## Main job (make run)"


def _children(pid: int) -> List[int]:
  try:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
      return [int(c) for c in f.read().split()]
  except OSError:
    return []


def tree_rss_bytes(pid: int) -> int:
  """Summed resident memory of `pid` and all its descendants."""
  total, stack = 0, [pid]
  while stack:
    p = stack.pop()
    try:
      with open(f"/proc/{p}/statm") as f:
        total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
      continue
    stack.extend(_children(p))
  return total


def stage_times(metadata_path: str) -> Dict[str, Tuple[float, float]]:
  """(start, end) epoch seconds per pipeline node, from MLMD execution create/update times."""
  from pipeline import metadata_queries  # pylint: disable=g-import-not-at-top
  store = metadata_queries.open_store(metadata_path)
  types = {t.id: t.name.split(".")[-1] for t in store.get_execution_types()}
  return {types[e.type_id]: (e.create_time_since_epoch / 1000,
                             e.last_update_time_since_epoch / 1000)
          for e in store.get_executions()}


def logged_seconds(lines: List[str], pattern: str) -> float:
  """The sum of the numbers the groups of regex `pattern` capture in the log lines."""
  return sum(float(g) for line in lines for m in [re.search(pattern, line)] if m
             for g in m.groups())


def time_by_stage(start: float, end: float, stages: Dict[str, Tuple[float, float]],
                  training: float, evaluation: float) -> List[Tuple[str, float]]:
  """(what, seconds) rows of the whole command: start-up, each stage in order, what follows;
  then training and evaluation (inside their stages) and everything else."""
  ordered = sorted(stages.items(), key=lambda item: item[1][0])
  rows = [("start-up: imports, sample data, pipeline compile (before the first stage)",
           ordered[0][1][0] - start if ordered else end - start)]
  rows += [(f"stage {name}", stop - begin) for name, (begin, stop) in ordered]
  rows.append(("after the last stage: the run summary, exit",
               end - ordered[-1][1][1] if ordered else 0.0))
  rows += [("of which training (the trainer's loop)", training),
           ("of which evaluation (the model over val + COCOeval)", evaluation),
           ("**outside training and evaluation**", end - start - training - evaluation)]
  return rows


def run_main_job(output_dir: str, pipeline_args: List[str] = (), echo: bool = True) -> Dict:
  """Runs run_pipeline.py --runner=local into a fresh `output_dir`; returns what it measured:
  seconds, peak_bytes, load, command, evaluation and model properties, stage seconds.
  Raises RuntimeError when the pipeline fails."""
  shutil.rmtree(output_dir, ignore_errors=True)
  load = common.load_average()
  command = [os.path.join(common.ROOT, ".venv", "bin", "python"),
             os.path.join(common.ROOT, "run_pipeline.py"), "--runner=local",
             f"--output_dir={output_dir}", *pipeline_args]
  start = time.time()
  # The pipeline gets the environment this benchmark was started with: it picks its own
  # TF_CPP_MIN_LOG_LEVEL (run_pipeline.py --verbose).
  process = subprocess.Popen(command, cwd=common.ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=common.inherited_environ())
  peak = 0
  lines: List[str] = []
  import threading  # pylint: disable=g-import-not-at-top

  def reader():
    for line in process.stdout:
      lines.append(line)
      if echo:
        sys.stdout.write(line)
  thread = threading.Thread(target=reader, daemon=True)
  thread.start()
  while process.poll() is None:
    peak = max(peak, tree_rss_bytes(process.pid))
    time.sleep(0.5)
  thread.join()
  seconds = time.time() - start
  if process.returncode != 0:
    raise RuntimeError(f"run_pipeline.py {' '.join(pipeline_args)} failed with exit code "
                       f"{process.returncode}: {''.join(lines[-40:])}")
  from pipeline import metadata_queries  # pylint: disable=g-import-not-at-top
  metadata = os.path.join(output_dir, "metadata.sqlite")
  store = metadata_queries.open_store(metadata)
  [evaluation] = store.get_artifacts_by_type("ModelEvaluation")
  [model] = store.get_artifacts_by_type("Model")
  times = stage_times(metadata)
  training = logged_seconds(lines, r"Training finished at step \d+ in ([\d.]+) s")
  eval_seconds = logged_seconds(
      lines, r"Evaluated \d+ images: .*\(model ([\d.]+) s, COCOeval ([\d.]+) s\)")
  return dict(seconds=seconds, peak_bytes=peak, load=load, command=command,
              evaluation=metadata_queries.custom_properties(evaluation),
              model=metadata_queries.custom_properties(model),
              stages={name: end - begin for name, (begin, end) in times.items()},
              time_by_stage=time_by_stage(start, start + seconds, times, training,
                                          eval_seconds))


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--output_dir", default="/tmp/main_job")
  parser.add_argument("--write_markdown", action="store_true")
  parser.add_argument("pipeline_args", nargs="*", help="extra run_pipeline.py flags")
  args = parser.parse_args()
  try:
    run = run_main_job(args.output_dir, args.pipeline_args)
  except RuntimeError as e:
    print(e, file=sys.stderr)
    return 1
  seconds, peak, load, command = run["seconds"], run["peak_bytes"], run["load"], run["command"]
  props, model_props, stages = run["evaluation"], run["model"], run["time_by_stage"]
  summary = (f"AP {props['AP']:.3f}, AP50 {props['AP50']:.3f}, AP75 {props['AP75']:.3f}; "
             f"{seconds / 60:.1f} min; peak memory {peak / 2**30:.2f} GiB")
  print(summary)
  if args.write_markdown:
    rows = "\n".join(f"| {name} | {s:.1f} |" for name, s in stages)
    section = f"""{HEADING}

`{' '.join(['python run_pipeline.py'] + command[2:])}` from an empty output directory
(the sample data is generated, converted, trained on, evaluated and pushed), measured by
`benchmarks/bench_main_job.py`; config `sample/tiny` (ResNet-18 x0.5, 192x192, batch 16,
{model_props['final_step']} steps, float32). Load average at the start: {common.format_load(load)}.

| what | value |
|---|---|
| validation AP@[.5:.95] / AP50 / AP75 | {props['AP']:.3f} / {props['AP50']:.3f} / {props['AP75']:.3f} |
| wall time, whole command | {seconds / 60:.1f} min |
| peak memory of the process tree (summed RSS, sampled every 0.5 s) | {peak / 2**30:.2f} GiB |
| training throughput | {model_props['train_images_per_second']:.1f} img/s |

Time by stage: the whole command from process start to exit. A stage's time runs from
its MLMD execution's registration to its last update; training and evaluation come from
the log (the trainer's loop, the model over the val images plus COCOeval), and the rest
is the time outside them.

| what | seconds |
|---|---|
{rows}
"""
    common.update_markdown_section(section, HEADING)
  return 0


if __name__ == "__main__":
  sys.exit(main())
