"""A fingerprint of the project's code, passed to every component.

TFX's cache key covers parameters and inputs but not a component's code, so a
changed trainer could otherwise be served a stale cached model. Hashing the
source of the packages the components run makes any code change a new key.
"""
from __future__ import annotations

import hashlib
import pathlib
from typing import Iterable

_REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("retinanet", "data", "components", "pipeline")


def code_version(root: pathlib.Path = _REPO_ROOT, packages: Iterable[str] = PACKAGES) -> str:
  """Returns the first 16 hex chars of a sha256 over every .py/.json file of `packages`."""
  digest = hashlib.sha256()
  for package in packages:
    for path in sorted((root / package).rglob("*")):
      if path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
  return digest.hexdigest()[:16]
