#!/usr/bin/env bash
# Creates .venv/ from the pinned lock file when it is missing or stale.
# Usage: scripts/bootstrap.sh   (idempotent; safe to call before every command)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
LOCK="$ROOT/requirements/requirements.lock"
STAMP="$VENV/.lock.sha256"
UV_VERSION="0.13.9"

find_python310() {
  local candidate
  for candidate in "${PYTHON310:-}" python3.10 \
      "$HOME/.pyenv/versions/"3.10*/bin/python3.10 \
      /usr/local/bin/python3.10 /usr/bin/python3.10; do
    [ -n "$candidate" ] || continue
    if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; then
      command -v "$candidate" 2>/dev/null || echo "$candidate"
      return 0
    fi
  done
  return 1
}

# The stamp: the lock's digest and how it is installed (bump the suffix when that changes).
want="$(sha256sum "$LOCK" | cut -d' ' -f1)-bytecode"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

if ! PY="$(find_python310)"; then
  echo "error: Python 3.10 was not found (TFX 1.16 needs Python 3.10)." >&2
  echo "  Install it (e.g. 'pyenv install 3.10.13') or point PYTHON310 at an interpreter:" >&2
  echo "  PYTHON310=/path/to/python3.10 $0" >&2
  exit 2
fi

echo "[bootstrap] creating $VENV with $PY from $(basename "$LOCK")"
start=$(date +%s)
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
# The lock pins every transitive version with hashes: no resolution happens here.
# --compile-bytecode writes every module's .pyc now: where PYTHONDONTWRITEBYTECODE is set
# (as on the 2-core CI machines), each interpreter would otherwise compile TensorFlow, TFX
# and Beam from source again, about 10 s per process (BENCHMARKS.md "Start-up").
"$VENV/bin/uv" pip install --python "$VENV/bin/python" --require-hashes --no-deps \
  --compile-bytecode -r "$LOCK"
# Make the repository's packages importable (also in Beam worker processes).
"$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
  | xargs -I{} sh -c 'echo "$1" > "{}/retinanet_tfx_repo.pth"' _ "$ROOT"
echo "$want" > "$STAMP"
echo "[bootstrap] environment ready in $(( $(date +%s) - start )) s"
