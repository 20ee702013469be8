"""The code's shape: layering, no import cycles, short functions, one definition per concept.

docs/ARCHITECTURE.md states these rules; this module checks them on the source
(imports anywhere in a file count, lazy ones inside functions included).
"""
import ast
import pathlib
import re

import pytest

from pipeline import code_version

ROOT = pathlib.Path(__file__).resolve().parent.parent
PRODUCT = ("retinanet", "data", "components", "pipeline")
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"


def _import_rule():
  """What each layer may import (besides itself), read from the layers table of the doc."""
  rule = {}
  for line in ARCHITECTURE.read_text().splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 3 and cells[0].strip("`") in PRODUCT:
      rule[cells[0].strip("`")] = set(re.findall(r"`(\w+)`", cells[2]))
  return rule


# Data conversion and statistics use the model library; the TFX adapters use both; the
# pipeline uses everything.
MAY_IMPORT = _import_rule()
MAX_FUNCTION_LINES = 80


def _modules():
  for package in PRODUCT:
    for path in sorted((ROOT / package).rglob("*.py")):
      parts = path.relative_to(ROOT).with_suffix("").parts
      yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


MODULES = dict(_modules())


def _imports(module):
  return {m for m in code_version.imported_modules(module, ROOT) if m.split(".")[0] in PRODUCT}


def test_the_documented_import_rule_is_the_layering():
  assert MAY_IMPORT == {"retinanet": set(), "data": {"retinanet"},
                        "components": {"retinanet", "data"},
                        "pipeline": {"retinanet", "data", "components"}}


def test_layers_import_only_what_they_may():
  wrong = []
  for module in MODULES:
    layer = module.split(".")[0]
    for imported in _imports(module):
      other = imported.split(".")[0]
      if other != layer and other not in MAY_IMPORT[layer]:
        wrong.append(f"{module} imports {imported}")
  assert wrong == []


def test_no_import_cycles():
  graph = {module: _imports(module) & set(MODULES) for module in MODULES}
  cycles, state = [], {}

  def visit(module, stack):
    state[module] = "open"
    for imported in sorted(graph[module]):
      if state.get(imported) == "open":
        cycles.append(" -> ".join(stack[stack.index(imported):] + [imported]))
      elif imported not in state:
        visit(imported, stack + [imported])
    state[module] = "done"

  for module in sorted(graph):
    if module not in state:
      visit(module, [module])
  # A package's __init__ importing its own submodule is no cycle of ours.
  cycles = [c for c in cycles if len(set(c.split(" -> "))) > 1 and not all(
      part.startswith(c.split(" -> ")[0]) for part in c.split(" -> "))]
  assert cycles == []


def test_functions_are_short():
  long = []
  for module, path in MODULES.items():
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        lines = node.end_lineno - node.lineno + 1
        if lines > MAX_FUNCTION_LINES:
          long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
  assert long == []


def _string_constants(path):
  return [(node.lineno, node.value) for node in ast.walk(ast.parse(path.read_text()))
          if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def _spelled_outside(home, strings):
  """Where a product module other than `home` spells one of `strings` as a literal."""
  found = []
  for module, path in MODULES.items():
    if module == home:
      continue
    for lineno, value in _string_constants(path):
      if value in strings:
        found.append(f"{path.relative_to(ROOT)}:{lineno} {value!r}")
  return found


def test_stage_node_ids_come_from_the_stage_table():
  """Node ids are the component classes' names: components/ defines the classes, everything
  else takes the ids from the table."""
  from pipeline import stages  # pylint: disable=g-import-not-at-top
  ids = {s.node_id for s in stages.STAGES} | {stages.BASE_MODEL_IMPORTER, stages.BASELINE_RESOLVER}
  assert [place for place in _spelled_outside("pipeline.stages", ids)
          if not place.startswith("components/")] == []


def _layout_names():
  from retinanet import layout  # pylint: disable=g-import-not-at-top
  names = {v for k, v in vars(layout).items() if k.isupper() and isinstance(v, str)}
  for group in (layout.ModelKeys, layout.EvaluationKeys, layout.BlessingKeys, layout.PushKeys,
                layout.BoxStatisticsKeys, layout.ExamplesKeys):
    names |= {v for k, v in vars(group).items() if k.isupper() and isinstance(v, str)}
  return names


# Layout strings that are also ordinary words of other vocabularies (a COCO metric, a config
# key, a field of the statistics report or of the training loop's metrics): they may appear
# in those roles elsewhere.
SHARED_WORDS = {"AP", "split", "reason", "strategy", "coverage", "min_coverage", "num_classes",
                "report", "blessed", "postprocess", "checkpoint", "formats", "ground_truth",
                "validation", "tensorboard", "Split-", "num_images", "export_formats",
                "coverage_ok", "truncated_objects", "skipped_records"}


def test_file_names_and_mlmd_keys_come_from_layout():
  assert _spelled_outside("retinanet.layout", _layout_names() - SHARED_WORDS) == []


def test_one_definition_of_the_modelgarden_scheme_and_the_keras_switch():
  assert _spelled_outside("retinanet.config", {"modelgarden:"}) == []
  setters = [f"{p.relative_to(ROOT)}" for p in list(ROOT.glob("*.py")) +
             [path for _, path in MODULES.items()]
             if re.search(r"environ(\.setdefault\(|\[)\s*\"TF_USE_LEGACY_KERAS\"", p.read_text())]
  assert setters == ["retinanet/__init__.py"], setters


def test_blessing_defaults_are_defined_once():
  from retinanet.evaluation import blessing  # pylint: disable=g-import-not-at-top
  assert blessing.DEFAULT_THRESHOLDS == blessing.BlessingThresholds()
  for module, path in MODULES.items():
    if module == "retinanet.evaluation.blessing":
      continue
    text = path.read_text()
    assert not re.search(r"min_ap[^=\n]*=\s*0\.\d", text), f"{module} sets a min_ap default"


@pytest.mark.parametrize("removed", ["evaluate_model_dir", "yxyx_to_xyxy", "load_trained_model",
                                     "dataset_fn_from_config", "retinanet_loss_fn"])
def test_removed_copies_stay_removed(removed):
  definitions = [module for module, path in MODULES.items()
                 if re.search(rf"^\s*def {removed}\(", path.read_text(), re.M)]
  assert definitions == []
