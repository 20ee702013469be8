"""CocoExampleGen: without an orchestrator (test_call) and in LocalDagRunner + MLMD."""
import json
import os

import apache_beam as beam
import pytest
# TFX's own modules, as pipeline/local_runner.py imports them: `tfx.v1` loads every standard
# component and the Google Cloud clients (about 4 s more for each test worker's collection).
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.metadata import sqlite_metadata_connection_config
from tfx.types import standard_artifacts

from components import ConversionReport, LabelMap
from components.example_gen import CocoExampleGen
from data import sample_data
from pipeline import metadata_queries
from retinanet import coco, layout


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
  root = tmp_path_factory.mktemp("sample")
  return sample_data.generate_sample_dataset(str(root), num_train=12, num_val=6,
                                             image_size=(64, 64), seed=3)


def _params(sample):
  return dict(train_annotations=sample.annotation_files["train"],
              train_images=sample.image_dirs["train"],
              val_annotations=sample.annotation_files["val"],
              val_images=sample.image_dirs["val"])


def _artifact(cls, uri):
  artifact = cls()
  artifact.uri = str(uri)
  os.makedirs(artifact.uri, exist_ok=True)
  return artifact


def test_component_function_without_orchestrator(sample, tmp_path):
  examples = _artifact(standard_artifacts.Examples, tmp_path / "examples")
  label_map = _artifact(LabelMap, tmp_path / "label_map")
  report = _artifact(ConversionReport, tmp_path / "conversion_report")
  CocoExampleGen.test_call(examples=examples, label_map=label_map, conversion_report=report,
                           num_shards=2, beam_pipeline=beam.Pipeline(), **_params(sample))
  assert json.loads(examples.split_names) == ["train", "val"]
  assert sorted(os.listdir(tmp_path / "examples" / "Split-train")) == [
      "data_tfrecord-00000-of-00002.gz", "data_tfrecord-00001-of-00002.gz"]
  stats = json.load(open(tmp_path / "conversion_report" / layout.CONVERSION_REPORT_FILE))
  lm = coco.load_label_map(str(tmp_path / "label_map" / layout.LABEL_MAP_FILE))
  for split, count in (("train", 12), ("val", 6)):
    s = stats["splits"][split]
    assert s["images_in"] == count
    assert examples.get_int_custom_property(f"{split}_examples") == s["images_written"]
    assert report.get_int_custom_property(f"{split}_images_in") == count
    skipped = sum(report.get_int_custom_property(f"{split}_images_skipped_{r}")
                  for r in s["images_skipped"])
    assert s["images_written"] + skipped == count
  assert label_map.get_int_custom_property("num_classes") == lm.num_classes


def test_component_in_local_dag_runner_records_mlmd(sample, tmp_path):
  metadata_path = str(tmp_path / "metadata.sqlite")
  component = CocoExampleGen(num_shards=1, **_params(sample))
  pipeline = tfx_pipeline.Pipeline(
      pipeline_name="example-gen-test",
      pipeline_root=str(tmp_path / "root"),
      components=[component],
      metadata_connection_config=sqlite_metadata_connection_config(metadata_path),
      beam_pipeline_args=["--direct_running_mode=in_memory",
                          "--sdk_container_image=unused-by-direct-runner"])
  LocalDagRunner().run(pipeline)

  store = metadata_queries.open_store(metadata_path)
  [examples] = store.get_artifacts_by_type("Examples")
  [label_map] = store.get_artifacts_by_type("components.LabelMap")
  [stats] = store.get_artifacts_by_type("components.ConversionReport")
  props = metadata_queries.custom_properties(examples)
  written = json.load(open(os.path.join(stats.uri, layout.CONVERSION_REPORT_FILE)))["splits"]
  assert props["train_examples"] == written["train"]["images_written"] > 0
  assert props["val_examples"] == written["val"]["images_written"] > 0
  assert props["train_shards"] == 1 and props["val_shards"] == 1
  assert metadata_queries.custom_properties(label_map)["num_classes"] == 5
  [execution] = store.get_executions()
  assert execution.last_known_state == execution.COMPLETE
