"""Per-component code fingerprints, passed to each component as a parameter.

TFX's cache key covers a component's parameters, inputs and executor spec,
but not the code it runs: without a fingerprint, a changed trainer could be
served a stale cached model. One hash of the whole project over-invalidates
(editing the CLI would re-convert the data and retrain), so each component is
keyed by exactly the project modules it can execute: its entry module and,
transitively, every project module imported from there (`import` statements
anywhere in a file, including the lazy ones inside functions), plus the
`__init__.py` of each package on the way (Python runs them on import; their
own imports are followed too). Modules outside the project (TensorFlow, TFX,
...) are pinned by the lock file instead.
"""
from __future__ import annotations

import ast
import hashlib
import pathlib
from typing import Dict, Iterable, List, Optional, Set

from pipeline import stages

_REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("retinanet", "data", "components", "pipeline")



def module_path(module: str, root: pathlib.Path = _REPO_ROOT) -> Optional[pathlib.Path]:
  """The file of a project module (`a.b` -> a/b.py or a/b/__init__.py); None if not one."""
  if module.split(".")[0] not in PACKAGES:
    return None
  base = root.joinpath(*module.split("."))
  for path in (base.with_suffix(".py"), base / "__init__.py"):
    if path.is_file():
      return path
  return None


def _package_of(module: str, path: pathlib.Path) -> str:
  return module if path.name == "__init__.py" else module.rpartition(".")[0]


def imported_modules(module: str, root: pathlib.Path = _REPO_ROOT) -> Set[str]:
  """Project modules that `module`'s source imports (absolute or relative), anywhere in it.

  `from a.b import c` counts a.b.c when that is a module, else a.b.
  """
  path = module_path(module, root)
  if path is None:
    return set()
  found: Set[str] = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    names: List[str] = []
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        package = _package_of(module, path).split(".")
        package = package[:len(package) - node.level + 1]
        base = ".".join(package + ([base] if base else []))
      names = [f"{base}.{alias.name}" if module_path(f"{base}.{alias.name}", root) else base
               for alias in node.names]
    found.update(n for n in names if module_path(n, root) is not None)
  return found


def module_closure(module: str, root: pathlib.Path = _REPO_ROOT,
                   parsed: Optional[Dict[str, Set[str]]] = None) -> List[pathlib.Path]:
  """Every project file that importing and running `module` can execute, sorted.

  `parsed` ({module: imported_modules}) is filled and reused, so closures computed
  together parse each file once.
  """
  parsed = {} if parsed is None else parsed
  seen: Set[str] = set()
  todo = [module]
  while todo:
    current = todo.pop()
    if current in seen or module_path(current, root) is None:
      continue
    seen.add(current)
    parts = current.split(".")
    todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run first
    if current not in parsed:
      parsed[current] = imported_modules(current, root)
    todo += sorted(parsed[current])
  return sorted(module_path(m, root) for m in seen)


def fingerprint(files: Iterable[pathlib.Path], root: pathlib.Path = _REPO_ROOT) -> str:
  """The first 16 hex chars of a sha256 over the files' paths and bytes."""
  digest = hashlib.sha256()
  for path in sorted(files):
    digest.update(str(path.relative_to(root)).encode())
    digest.update(path.read_bytes())
  return digest.hexdigest()[:16]


def component_code_version(module: str, root: pathlib.Path = _REPO_ROOT,
                           parsed: Optional[Dict[str, Set[str]]] = None) -> str:
  """The fingerprint of everything `module` can execute in the project."""
  return fingerprint(module_closure(module, root, parsed), root)


def component_code_versions(root: pathlib.Path = _REPO_ROOT) -> Dict[str, str]:
  """{node id: code fingerprint} of every stage's component (pipeline/stages.py); each
  project file is parsed once for all of them."""
  parsed: Dict[str, Set[str]] = {}
  return {stage.node_id: component_code_version(stage.module, root, parsed)
          for stage in (*stages.STAGES, *stages.CONTINUOUS_STAGES)}
