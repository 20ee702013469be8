"""data/download_coco.py: argument handling and the plan (no network needed)."""
import io
import json
import os
import pathlib
import urllib.request
import zipfile

import pytest

from data import download_coco as dl


@pytest.fixture
def no_network(monkeypatch):
  def fail(*args, **kwargs):
    raise AssertionError(f"network access attempted: {args}")
  monkeypatch.setattr(urllib.request, "urlopen", fail)


def test_default_plan_has_official_urls_and_layout(tmp_path):
  args, beam_args = dl.parse_args(["--output_dir", str(tmp_path)])
  plan = dl.make_plan(args, beam_args)
  assert [d.url for d in plan.downloads] == [
      "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
      "http://images.cocodataset.org/zips/train2017.zip",
      "http://images.cocodataset.org/zips/val2017.zip"]
  assert plan.splits == {
      "train": (str(tmp_path / "annotations" / "instances_train2017.json"),
                str(tmp_path / "train2017")),
      "val": (str(tmp_path / "annotations" / "instances_val2017.json"),
              str(tmp_path / "val2017"))}
  assert plan.tfrecord_dir is None and plan.beam_args == ()
  assert [d.zip_path for d in plan.downloads] == [
      str(tmp_path / n) for n in ("annotations_trainval2017.zip", "train2017.zip",
                                  "val2017.zip")]


def test_splits_subset_and_beam_args_pass_through(tmp_path):
  args, beam_args = dl.parse_args([
      "--output_dir", str(tmp_path), "--splits", "val", "--tfrecord_dir", "gs://b/out",
      "--num_shards", "4", "--runner=DataflowRunner", "--project", "p", "--region=europe-west4",
      "--temp_location=gs://b/tmp"])
  plan = dl.make_plan(args, beam_args)
  assert list(plan.splits) == ["val"]
  assert [d.url for d in plan.downloads][1:] == ["http://images.cocodataset.org/zips/val2017.zip"]
  assert plan.beam_args == ("--runner=DataflowRunner", "--project", "p",
                            "--region=europe-west4", "--temp_location=gs://b/tmp")
  assert (plan.tfrecord_dir, plan.num_shards) == ("gs://b/out", 4)


@pytest.mark.parametrize("argv, message", [
    (["--splits", "test"], "--splits must be"),
    (["--splits", ""], "--splits must be"),
    (["--num_shards", "0", "--tfrecord_dir", "x"], "--num_shards must be >= 1"),
    (["--runner=DataflowRunner"], "Beam arguments need --tfrecord_dir"),
])
def test_bad_arguments_exit_with_a_message(tmp_path, capsys, argv, message):
  with pytest.raises(SystemExit) as e:
    dl.parse_args(["--output_dir", str(tmp_path)] + argv)
  assert e.value.code == 2
  assert message in capsys.readouterr().err


def test_gcs_output_dir_is_refused(capsys):
  with pytest.raises(SystemExit):
    dl.parse_args(["--output_dir", "gs://bucket/coco"])
  assert "local directory" in capsys.readouterr().err


def test_output_dir_is_required(capsys):
  with pytest.raises(SystemExit):
    dl.parse_args([])
  assert "--output_dir" in capsys.readouterr().err


def test_dry_run_prints_the_plan_and_touches_nothing(tmp_path, capsys, no_network):
  out = tmp_path / "coco"
  assert dl.main(["--output_dir", str(out), "--tfrecord_dir", str(tmp_path / "tf"),
                  "--dry_run", "--direct_num_workers=2"]) == 0
  text = capsys.readouterr().out
  assert "http://images.cocodataset.org/zips/train2017.zip" in text
  assert "download + unzip" in text
  assert "--direct_num_workers=2" in text
  assert not out.exists()


def test_plan_marks_finished_steps_as_skipped(tmp_path, capsys, no_network):
  (tmp_path / "val2017").mkdir()
  (tmp_path / "annotations").mkdir()
  (tmp_path / "annotations" / "instances_val2017.json").write_text("{}")
  dl.main(["--output_dir", str(tmp_path), "--splits", "val", "--dry_run"])
  text = capsys.readouterr().out
  assert text.count("done, skip") == 2
  assert "no conversion" in text


def _zip_bytes(files):
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w") as z:
    for name, data in files.items():
      z.writestr(name, data)
  return buffer.getvalue()


def test_download_and_extract_with_a_local_url(tmp_path):
  source = tmp_path / "src.zip"
  source.write_bytes(_zip_bytes({"val2017/a.jpg": b"abc", "annotations/x.json": b"{}"}))
  target = tmp_path / "dl" / "val2017.zip"
  dl.download(pathlib.Path(source).as_uri(), str(target))
  assert target.read_bytes() == source.read_bytes()
  assert not os.path.exists(str(target) + ".part")
  dl.extract(str(target), str(tmp_path / "dl"))
  assert (tmp_path / "dl" / "val2017" / "a.jpg").read_bytes() == b"abc"


def test_damaged_zip_is_reported(tmp_path):
  path = tmp_path / "bad.zip"
  path.write_bytes(b"PK\x03\x04 not really a zip")
  with pytest.raises(IOError, match="bad.zip is damaged"):
    dl.extract(str(path), str(tmp_path))


def test_run_uses_existing_zips_and_converts(tmp_path, monkeypatch):
  """A full run from local zips (no network): unzip, then convert the val split."""
  from data import sample_data
  shapes = sample_data.generate_sample_dataset(str(tmp_path / "shapes"), 0, 3, (40, 48), seed=1)
  ann, image_dir = shapes.splits["val"]
  with open(ann) as f:
    annotations = f.read()
  images = {f"val2017/{n}": open(os.path.join(image_dir, n), "rb").read()
            for n in os.listdir(image_dir)}
  out = tmp_path / "coco"
  out.mkdir()
  (out / "annotations_trainval2017.zip").write_bytes(_zip_bytes(
      {"annotations/instances_val2017.json": annotations}))
  (out / "val2017.zip").write_bytes(_zip_bytes(images))
  monkeypatch.setattr(urllib.request, "urlopen", None)
  assert dl.main(["--output_dir", str(out), "--splits", "val", "--tfrecord_dir",
                  str(tmp_path / "tf"), "--direct_running_mode=in_memory"]) == 0
  assert not (out / "val2017.zip").exists()
  with open(tmp_path / "tf" / "conversion_report.json") as f:
    assert json.load(f)["splits"]["val"]["images_written"] == 3
