"""scripts/bootstrap.sh: a clear error (not a stack trace) when Python 3.10 is missing."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_missing_python310_is_a_clear_error(tmp_path):
  # A copy of the script and lock, so the real .venv is never touched.
  (tmp_path / "scripts").mkdir()
  (tmp_path / "requirements").mkdir()
  shutil.copy(os.path.join(ROOT, "scripts", "bootstrap.sh"), tmp_path / "scripts")
  shutil.copy(os.path.join(ROOT, "requirements", "requirements.lock"), tmp_path / "requirements")
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  for tool in ("sha256sum", "cut", "cat", "rm", "dirname", "date", "xargs", "sh"):
    path = shutil.which(tool)
    if path:
      os.symlink(path, bin_dir / tool)
  env = {"PATH": str(bin_dir), "HOME": str(tmp_path / "home"), "PYTHON310": ""}
  if any(os.path.exists(p) for p in ("/usr/local/bin/python3.10", "/usr/bin/python3.10")):
    pytest.skip("a system-wide python3.10 exists on this machine")
  result = subprocess.run(["/bin/bash", str(tmp_path / "scripts" / "bootstrap.sh")], env=env,
                          capture_output=True, text=True, check=False)
  assert result.returncode == 2
  assert "Python 3.10 was not found" in result.stderr
  assert "PYTHON310=" in result.stderr and "Traceback" not in result.stderr
  assert not (tmp_path / ".venv").exists()
