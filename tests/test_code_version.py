"""Per-component code fingerprints: an edit invalidates exactly the components that run it."""
import pathlib
import shutil

import pytest

from pipeline import code_version as cv

ROOT = pathlib.Path(cv.__file__).resolve().parent.parent


@pytest.fixture()
def repo(tmp_path):
  """A copy of the project's packages, to edit."""
  for package in cv.PACKAGES:
    shutil.copytree(ROOT / package, tmp_path / package,
                    ignore=shutil.ignore_patterns("__pycache__"))
  return tmp_path


def _edit(path: pathlib.Path) -> None:
  path.write_text(path.read_text() + "\n# edited\n")


def test_closure_follows_lazy_relative_and_package_imports(tmp_path):
  (tmp_path / "pipeline").mkdir()
  (tmp_path / "pipeline" / "__init__.py").write_text("")
  (tmp_path / "pipeline" / "a.py").write_text(
      "import os\n\ndef f():\n  from . import b  # lazy and relative\n  return b\n")
  (tmp_path / "pipeline" / "b.py").write_text("from pipeline.sub import c\n")
  (tmp_path / "pipeline" / "sub").mkdir()
  (tmp_path / "pipeline" / "sub" / "__init__.py").write_text("")
  (tmp_path / "pipeline" / "sub" / "c.py").write_text("x = 1\n")
  (tmp_path / "pipeline" / "unused.py").write_text("y = 2\n")
  files = [str(p.relative_to(tmp_path)) for p in cv.module_closure("pipeline.a", tmp_path)]
  assert files == ["pipeline/__init__.py", "pipeline/a.py", "pipeline/b.py",
                   "pipeline/sub/__init__.py", "pipeline/sub/c.py"]


def test_an_evaluator_edit_invalidates_the_evaluator_only(repo):
  before = cv.component_code_versions(repo)
  _edit(repo / "components" / "evaluator.py")
  after = cv.component_code_versions(repo)
  changed = {node for node in before if before[node] != after[node]}
  # The Pusher reruns too, as its blessing input is new: TFX keys on input artifacts.
  assert changed == {"RetinaNetEvaluator"}


def test_a_cli_edit_invalidates_nothing(repo):
  before = cv.component_code_versions(repo)
  for path in ("pipeline/cli.py", "pipeline/run.py", "pipeline/summary.py",
               "retinanet/configs/coco/retinanet-r50-640-1x-b64-8gpu.json"):
    _edit(repo / path)
  assert cv.component_code_versions(repo) == before


def test_library_edits_reach_the_components_that_run_them(repo):
  before = cv.component_code_versions(repo)
  _edit(repo / "data" / "example_codec.py")   # the converter (and every reader of its spec)
  assert cv.component_code_versions(repo)["CocoExampleGen"] != before["CocoExampleGen"]
  before = cv.component_code_versions(repo)
  _edit(repo / "retinanet" / "losses.py")     # training (through the task that builds it)
  after = cv.component_code_versions(repo)
  changed = {n for n in before if before[n] != after[n]}
  assert "RetinaNetTrainer" in changed
  assert not changed & {"CocoExampleGen", "BoxStatisticsGen"}   # never the data stages
  before = after
  _edit(repo / "retinanet" / "serving" / "export.py")
  after = cv.component_code_versions(repo)
  assert "CocoExampleGen" not in [n for n in before if before[n] != after[n]]
  assert after["RetinaNetPusher"] != before["RetinaNetPusher"]
