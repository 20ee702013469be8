"""Start-up: how long the CLI's commands take before they do anything, in fresh processes.

    .venv/bin/python benchmarks/bench_startup.py [--repeats 3] [--write_markdown]

Each row is a fresh interpreter of the venv (the environment this script runs in,
TF_USE_LEGACY_KERAS=1), timed from start to exit; the rows run interleaved, `--repeats`
rounds, and the median is reported. The reference is `import tensorflow` in the same
rounds: the issue's goals are ratios to it (`import pipeline.run, pipeline.pipeline` at
most TensorFlow + 5 s, `--list_configs` 3 s or less).

The venv's modules are compiled to .pyc when it is built (scripts/bootstrap.sh,
`--compile-bytecode`). Where PYTHONDONTWRITEBYTECODE is set, as on this workplace's
machines, an interpreter without those files compiles every module from source on every
start; the "no .pyc" rows show that cost by pointing `-X pycache_prefix` at an empty
directory, so Python finds no cached bytecode (and writes none).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

HEADING = "## Start-up"
PYTHON = os.path.join(common.ROOT, ".venv", "bin", "python")
RUN_PIPELINE = os.path.join(common.ROOT, "run_pipeline.py")

# (label, arguments after the interpreter, pycache off, expected exit code)
COMMANDS: Tuple[Tuple[str, Tuple[str, ...], bool, int], ...] = (
    ("`import tensorflow` (the reference)", ("-c", "import tensorflow"), False, 0),
    ("`import pipeline.run, pipeline.pipeline`",
     ("-c", "import pipeline.run, pipeline.pipeline"), False, 0),
    ("`... + pipeline.local_runner` (what `--runner=local` imports before its first stage)",
     ("-c", "import pipeline.run, pipeline.pipeline, pipeline.local_runner"), False, 0),
    ("`run_pipeline.py --list_configs`", (RUN_PIPELINE, "--list_configs"), False, 0),
    ("`run_pipeline.py --help`", (RUN_PIPELINE, "--help"), False, 0),
    ("`run_pipeline.py --set model.no_such_key=1` (a config error, exit 2)",
     (RUN_PIPELINE, "--set", "model.no_such_key=1"), False, 2),
    ("`import tensorflow`, no .pyc", ("-c", "import tensorflow"), True, 0),
    ("`import pipeline.run, pipeline.pipeline`, no .pyc",
     ("-c", "import pipeline.run, pipeline.pipeline"), True, 0),
)


def time_command(args: Sequence[str], no_pycache: bool, empty_dir: str, exit_code: int) -> float:
  """Wall seconds of one fresh interpreter running `args`; raises if it exits otherwise."""
  prefix = ["-X", f"pycache_prefix={empty_dir}"] if no_pycache else []
  env = {**common.inherited_environ(), "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
         "PYTHONWARNINGS": "ignore"}
  if no_pycache:
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # so the empty directory stays empty
  start = time.perf_counter()
  done = subprocess.run([PYTHON, *prefix, *args], cwd=common.ROOT, env=env, check=False,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  seconds = time.perf_counter() - start
  if done.returncode != exit_code:
    raise RuntimeError(f"{' '.join(args)} exited {done.returncode}, not {exit_code}: "
                       f"{done.stderr[-2000:]}")
  return seconds


def measure(repeats: int) -> Dict[str, List[float]]:
  """{label: wall seconds of each round}, the commands interleaved round by round."""
  seconds: Dict[str, List[float]] = {label: [] for label, _, _, _ in COMMANDS}
  with tempfile.TemporaryDirectory(prefix="no_pycache_") as empty:
    for round_index in range(repeats):
      for label, args, no_pycache, exit_code in COMMANDS:
        seconds[label].append(time_command(args, no_pycache, empty, exit_code))
        print(f"round {round_index + 1}: {label}: {seconds[label][-1]:.2f} s", flush=True)
  return seconds


def markdown(seconds: Dict[str, List[float]], load_start, load_end, total: float,
             repeats: int) -> str:
  reference = statistics.median(seconds[COMMANDS[0][0]])
  rows = []
  for label, values in seconds.items():
    median = statistics.median(values)
    rows.append(f"| {label} | {median:.1f} | {median - reference:+.1f} | "
                f"{', '.join(f'{v:.1f}' for v in values)} |")
  pyc = os.environ.get("PYTHONDONTWRITEBYTECODE")
  return "\n".join([
      HEADING, "",
      common.run_header(common.command_line("bench_startup.py"), total, load_start, load_end)
      + f". PYTHONDONTWRITEBYTECODE={pyc or '(unset)'} in this environment.", "",
      "Fresh interpreters of the venv, timed from start to exit, the rows interleaved over "
      f"{repeats} rounds (median). Goals (issue 27): `import pipeline.run, pipeline.pipeline` "
      "at most TensorFlow + 5 s; `--list_configs` 3 s or less; a flag or `--set` mistake "
      "reported before TensorFlow loads.", "",
      "| command | median s | vs `import tensorflow` | each round |",
      "|---|---|---|---|",
      *rows, "",
      "The \"no .pyc\" rows: the same imports with no cached bytecode (`-X pycache_prefix` "
      "on an empty directory), what every process paid before the venv was built with "
      "`--compile-bytecode` where PYTHONDONTWRITEBYTECODE is set. `pipeline.local_runner` "
      "imports TFX's input-resolution ops, whose module imports every standard TFX "
      "component (TFMA, TFDV, Keras Tuner, Kubernetes client): TFX's own cost, paid by every "
      "local run, not by the CLI's quick answers.",
  ])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--write_markdown", action="store_true")
  args = parser.parse_args(argv)
  load_start, start = common.load_average(), time.time()
  seconds = measure(args.repeats)
  common.publish(markdown(seconds, load_start, common.load_average(), time.time() - start,
                          args.repeats), HEADING, args.write_markdown)
  return 0


if __name__ == "__main__":
  sys.exit(main())
