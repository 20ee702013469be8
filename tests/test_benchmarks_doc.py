"""BENCHMARKS.md holds the current code's measurements, each regenerable by its script.

Every section of BENCHMARKS.md is one that benchmarks/run_all.py lists, its script's
HEADING is that section's heading (so the script rewrites exactly it), and it starts with
the provenance line (commit, date, machine, command). Every reference in the code and
docs of the form BENCHMARKS.md followed by a quoted section name names a section that is
there; references to measurements not rerun on the current code point at
docs/benchmarks-history.md instead.
"""
import ast
import glob
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import common  # noqa: E402  pylint: disable=g-import-not-at-top
import run_all  # noqa: E402  pylint: disable=g-import-not-at-top

BENCHMARKS = open(os.path.join(ROOT, "BENCHMARKS.md")).read()
HISTORY = open(os.path.join(ROOT, "docs", "benchmarks-history.md")).read()


def script_heading(script: str) -> str:
  """The HEADING constant a benchmark script assigns (read from its source)."""
  tree = ast.parse(open(os.path.join(ROOT, "benchmarks", script)).read())
  for node in tree.body:
    if (isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "HEADING"
                                             for t in node.targets)):
      return ast.literal_eval(node.value)
  raise AssertionError(f"benchmarks/{script} has no HEADING")


@pytest.mark.parametrize("section", run_all.SECTIONS, ids=lambda s: s.script)
def test_each_listed_section_is_written_by_its_script(section):
  assert script_heading(section.script) == section.heading


def test_every_section_names_its_commit_machine_and_command():
  sections = run_all.section_headings(BENCHMARKS)
  assert sections, "BENCHMARKS.md has no section"
  listed = {s.heading: s for s in run_all.SECTIONS}
  for heading in sections:
    assert heading in listed, f"{heading!r} is not in benchmarks/run_all.py SECTIONS"
    body = BENCHMARKS.split(heading + "\n", 1)[1].lstrip("\n")
    first_line = body.split("\n", 1)[0]
    assert re.match(rf"{re.escape(common.PROVENANCE_PREFIX)}`[0-9a-f]{{7}}`", first_line), (
        f"{heading}: no provenance line (commit) under the heading: {first_line!r}")
    assert "cores" in first_line and listed[heading].script in first_line, first_line
  # The index at the top is the one run_all.py writes for these sections.
  assert BENCHMARKS.startswith(run_all.index_markdown(BENCHMARKS[BENCHMARKS.index("\n## "):]))


def _references():
  """(file, document, section) of each reference to a section of either document."""
  files = [os.path.join(ROOT, "README.md")] + glob.glob(os.path.join(ROOT, "docs", "*.md"))
  # (benchmarks/ is left out: a script names the section it writes, which may not be there.)
  for package in ("retinanet", "data", "components", "pipeline", "tests", "scripts"):
    files += glob.glob(os.path.join(ROOT, package, "**", "*.py"), recursive=True)
    files += glob.glob(os.path.join(ROOT, package, "**", "*.sh"), recursive=True)
  pattern = re.compile(r"(BENCHMARKS\.md|benchmarks-history\.md)\W{0,3}\s+\"(?:## )?([^\"]+)\"")
  for path in files:
    text = re.sub(r"\s+", " ", open(path).read())
    for document, section in pattern.findall(text):
      yield os.path.relpath(path, ROOT), document, section


def test_section_references_name_sections_that_exist():
  references = list(_references())
  assert len(references) > 5
  for path, document, section in references:
    text = BENCHMARKS if document == "BENCHMARKS.md" else HISTORY
    assert f"\n## {section}\n" in text, f"{path}: {document} has no section {section!r}"
