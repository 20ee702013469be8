"""Regenerates BENCHMARKS.md: the sections that fit in an hour on 2 cores, then the index.

    .venv/bin/python benchmarks/run_all.py [--only bench_eval.py,bench_nms.py] [--index_only]
    make bench

Runs each script of `SECTIONS` marked `in_make_bench` with --write_markdown, one after the
other (each writes its own section, under a line naming the commit, date, machine and
command: benchmarks/common.py), then rewrites the top of BENCHMARKS.md: what it holds and
the table of sections. The other sections take longer or need Model Garden's venv; the
index gives their commands. Sections of earlier code live in docs/benchmarks-history.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import time
from typing import Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top


@dataclasses.dataclass(frozen=True)
class Section:
  """One section of BENCHMARKS.md: its area, heading, the script (and arguments) that
  writes it, and whether `make bench` runs it (`note`: why not, and how long it takes)."""
  area: str
  heading: str
  script: str
  args: Tuple[str, ...] = ()
  in_make_bench: bool = True
  note: str = ""

  @property
  def command(self) -> str:
    return " ".join(["python", f"benchmarks/{self.script}", *self.args, "--write_markdown"])


# In BENCHMARKS.md order. Each script's HEADING is its section's heading (a test checks).
SECTIONS = (
    Section("start-up", "## Start-up", "bench_startup.py"),
    Section("accuracy", "## Main job (make run)", "bench_main_job.py"),
    Section("model", "## Model forward pass", "bench_model.py"),
    Section("training", "## Training", "bench_train.py"),
    Section("training", "## Multi-worker training", "bench_multiworker.py"),
    Section("data", "## Input pipeline", "bench_input.py"),
    Section("data", "## Data stage", "bench_data.py"),
    Section("evaluation", "## Evaluation", "bench_eval.py"),
    Section("evaluation", "## COCO evaluation backends", "bench_cocoeval.py"),
    Section("serving", "## Serving", "bench_serving.py"),
    Section("serving", "## NMS modes at 80 classes", "bench_nms.py"),
    Section("serving", "## Serving formats", "bench_formats.py", in_make_bench=False,
            note="about 13 min (ResNet-50 to ONNX and TFLite)"),
    Section("data", "## Data stage at COCO scale", "bench_coco_scale.py", in_make_bench=False,
            note="about 40 min: 118,287 generated images through the data stage"),
    Section("model", "## MobileNetV3 backbones", "bench_mobile.py", in_make_bench=False,
            note="about 30 min: three pipelines"),
    Section("parity", "## Model Garden parity", "bench_modelgarden_parity.py",
            in_make_bench=False, note="needs Model Garden's venv (the script builds it)"),
    Section("parity", "## Model Garden checkpoint import", "bench_modelgarden_import.py",
            in_make_bench=False, note="needs Model Garden's venv"),
    Section("parity", "## Training parity with Model Garden", "bench_training_parity.py",
            ("--seeds", "0", "1", "2"), in_make_bench=False,
            note="needs Model Garden's venv; about 25 min"),
)

INTRO = """# Benchmarks

Measurements of the current code only. Each section starts with the commit, date, machine
and command that wrote it; ratios within a section were measured in one run (the machine
kind changes between sessions, so compare ratios, not absolute times across sections).
`make bench` (`benchmarks/run_all.py`) reruns the sections marked below (42 min on 2 cores
in all); the others take longer or need Model Garden's venv, and their command is given.
A section that is not here was not rerun on the current code: its last measurement, with
everything measured on earlier code and other machines, is in
[docs/benchmarks-history.md](docs/benchmarks-history.md).
"""


def section_headings(text: str):
  return re.findall(r"^## .*$", text, re.M)


def index_markdown(text: str) -> str:
  """The intro and the table of sections (with each present section's commit and date)."""
  present = set(section_headings(text))
  rows = ["| area | section | command | in `make bench` | measured at |", "|---|---|---|---|---|"]
  for s in SECTIONS:
    stamp = "not rerun on the current code (history)"
    if s.heading in present:
      body = text.split(s.heading + "\n", 1)[1]
      found = re.search(rf"{re.escape(common.PROVENANCE_PREFIX)}`([^`]+)` on (\S+),", body)
      stamp = f"`{found.group(1)}`, {found.group(2)}" if found else "(no provenance line)"
    anchor = re.sub(r"[^a-z0-9 -]", "", s.heading[3:].lower()).replace(" ", "-")
    name = f"[{s.heading[3:]}](#{anchor})" if s.heading in present else s.heading[3:]
    rows.append(f"| {s.area} | {name} | `{s.command}` | "
                f"{'yes' if s.in_make_bench else 'no: ' + s.note} | {stamp} |")
  return INTRO + "\n" + "\n".join(rows) + "\n"


def write_index(path: str = common.BENCHMARKS_MD) -> None:
  """Rewrites everything above the first "## " section; the sections stay as they are."""
  text = open(path).read() if os.path.exists(path) else ""
  first = re.search(r"^## ", text, re.M)
  body = text[first.start():] if first else ""
  # Sections in SECTIONS order, any other after them.
  chunks = {h: c for h, c in re.findall(r"^(## .*)\n(.*?)(?=^## |\Z)", body, re.S | re.M)}
  ordered = [s.heading for s in SECTIONS if s.heading in chunks]
  ordered += [h for h in chunks if h not in ordered]
  sections = "".join(f"{h}\n{chunks[h].rstrip()}\n\n" for h in ordered)
  with open(path, "w") as f:
    f.write(index_markdown(body) + "\n" + sections.rstrip("\n") + "\n")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--only", default="", help="comma-separated scripts (default: make bench's)")
  parser.add_argument("--index_only", action="store_true")
  args = parser.parse_args(argv)
  chosen = ([s for s in SECTIONS if s.script in args.only.split(",")] if args.only
            else [s for s in SECTIONS if s.in_make_bench])
  failed = []
  start = time.time()
  for index, s in enumerate([] if args.index_only else chosen):
    print(f"[{index + 1}/{len(chosen)}] {s.command}  ({(time.time() - start) / 60:.1f} min so "
          "far)", flush=True)
    began = time.time()
    done = subprocess.run([sys.executable, os.path.join(common.ROOT, "benchmarks", s.script),
                           *s.args, "--write_markdown"], cwd=common.ROOT, check=False)
    print(f"[{index + 1}/{len(chosen)}] {s.script}: exit {done.returncode} in "
          f"{time.time() - began:.0f} s", flush=True)
    if done.returncode:
      failed.append(s.script)
  write_index()
  ran = 0 if args.index_only else len(chosen)
  print(f"BENCHMARKS.md index rewritten; {ran} scripts in {(time.time() - start) / 60:.1f} min"
        + (f"; failed: {', '.join(failed)}" if failed else ""))
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
