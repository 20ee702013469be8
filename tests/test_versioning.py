"""Versioned serving directory: TF Serving layout, monotonic versions, staging."""
import os

import pytest

from retinanet.serving import versioning


def _fake_export(tmp_path, name="export"):
  d = tmp_path / name
  (d / "variables").mkdir(parents=True)
  (d / "saved_model.pb").write_bytes(b"pb")
  (d / "variables" / "variables.index").write_bytes(b"idx")
  return str(d)


def test_push_creates_integer_versions(tmp_path):
  export_dir = _fake_export(tmp_path)
  base = str(tmp_path / "serving")
  v1 = versioning.push_directory(export_dir, base, version=100)
  assert v1 == os.path.join(base, "100")
  assert open(os.path.join(v1, "saved_model.pb"), "rb").read() == b"pb"
  assert os.path.exists(os.path.join(v1, "variables", "variables.index"))
  assert versioning.list_versions(base) == [100]
  # The next version is above the last even when the clock says otherwise.
  assert versioning.next_version(base, now=50) == 101
  assert versioning.next_version(base, now=500) == 500
  versioning.push_directory(export_dir, base, version=versioning.next_version(base, now=50))
  assert versioning.list_versions(base) == [100, 101]
  assert versioning.latest_version_dir(base) == os.path.join(base, "101")
  # Nothing is left in staging; only numeric dirs are versions.
  assert sorted(os.listdir(base)) == ["100", "101"]


def test_versions_are_immutable(tmp_path):
  export_dir = _fake_export(tmp_path)
  base = str(tmp_path / "serving")
  versioning.push_directory(export_dir, base, version=7)
  with pytest.raises(FileExistsError, match="immutable"):
    versioning.push_directory(export_dir, base, version=7)


def test_incomplete_dirs_are_not_versions(tmp_path):
  base = tmp_path / "serving"
  (base / "12").mkdir(parents=True)          # no saved_model.pb yet
  (base / ".tmp-13").mkdir()
  assert versioning.list_versions(str(base)) == []
  assert versioning.latest_version_dir(str(base)) is None
  assert versioning.list_versions(str(tmp_path / "missing")) == []


def test_copy_tree_copies_saved_model_last(tmp_path, monkeypatch):
  export_dir = _fake_export(tmp_path)
  order = []
  real_copy = versioning.tf.io.gfile.copy
  monkeypatch.setattr(versioning.tf.io.gfile, "copy",
                      lambda s, d, overwrite=False: (order.append(os.path.basename(d)),
                                                     real_copy(s, d, overwrite=overwrite)))
  versioning._copy_tree(export_dir, str(tmp_path / "copy"))
  assert order[-1] == "saved_model.pb" and "variables.index" in order


def test_validation_runs_on_the_staged_copy_before_the_version_appears(tmp_path):
  export_dir = _fake_export(tmp_path)
  base = str(tmp_path / "serving")
  seen = []

  def check(staged):
    seen.append(staged)
    assert os.path.basename(staged) == ".tmp-5" and not versioning.list_versions(base)
    assert open(os.path.join(staged, "saved_model.pb"), "rb").read() == b"pb"

  versioning.push_directory(export_dir, base, version=5, validate=check)
  assert seen and versioning.list_versions(base) == [5]

  def reject(staged):
    raise RuntimeError("does not answer")

  with pytest.raises(RuntimeError, match="does not answer"):
    versioning.push_directory(export_dir, base, version=6, validate=reject)
  assert versioning.list_versions(base) == [5]
  assert sorted(os.listdir(base)) == ["5"]   # the rejected copy is gone
