"""The code fingerprint that keys the TFX cache changes with any source change."""
from pipeline.code_version import code_version


def test_code_version_tracks_source(tmp_path):
  pkg = tmp_path / "pkg"
  pkg.mkdir()
  (pkg / "a.py").write_text("x = 1\n")
  first = code_version(tmp_path, ["pkg"])
  assert first == code_version(tmp_path, ["pkg"])
  (pkg / "a.py").write_text("x = 2\n")
  second = code_version(tmp_path, ["pkg"])
  assert second != first
  (pkg / "notes.txt").write_text("ignored")
  assert code_version(tmp_path, ["pkg"]) == second
  (pkg / "b.json").write_text("{}")
  assert code_version(tmp_path, ["pkg"]) != second
