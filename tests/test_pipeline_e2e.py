"""End-to-end local pipeline runs and the accuracy gate (marked e2e: `make test-e2e`).

One full run of the main job (the built-in sample data, the shipped sample/tiny
config, the default seed; pre-push validation in this process, see
conftest.validating_in_process) that must reach SAMPLE_AP_FLOOR: a change that breaks
learning turns the suite red. Then a partial run of the Evaluator alone that
must reuse the Trainer's model artifact from MLMD, the lineage command on the
result, and a fine-tuning pipeline from that model on a dataset with other
sparse category ids, which must reach FINETUNE_AP_FLOOR.
"""
import contextlib
import io
import json
import os

import pytest

from data import sample_data
from pipeline import cli, lineage, metadata_queries, stages
from retinanet import model_dir as model_dir_lib
from tests.conftest import validating_in_process

pytestmark = pytest.mark.e2e

# Floors set from measurement with margin (README "Results on the sample data"):
# the main job measured 0.599-0.603 (seed 0, AVX2), the fine-tuning run 0.661.
SAMPLE_AP_FLOOR = 0.50
FINETUNE_AP_FLOOR = 0.50
# Fine-tuning budget: 150 steps of sample/tiny (batch 16) on 3 new classes.
FINETUNE = ["--set", "train.total_steps=150", "--set", "optimizer.warmup_steps=20",
            "--set", "optimizer.boundaries=[100, 133]", "--direct_mode=in_memory"]


def _dataset_flags(dataset):
  return ["--dataset=custom",
          f"--train_annotations={dataset.annotation_files['train']}",
          f"--train_images={dataset.image_dirs['train']}",
          f"--val_annotations={dataset.annotation_files['val']}",
          f"--val_images={dataset.image_dirs['val']}"]


def _executions(store, node_id, state=None):
  """Executions of one node (its execution type is the component class, named as the node)."""
  types = {t.id: t.name for t in store.get_execution_types()}
  return sorted((e for e in store.get_executions()
                 if types[e.type_id].split(".")[-1] == node_id and
                 (state is None or e.last_known_state == state)), key=lambda e: e.id)


def _ap(output_dir):
  store = metadata_queries.open_store(os.path.join(output_dir, "metadata.sqlite"))
  [evaluation] = store.get_artifacts_by_type("ModelEvaluation")
  return json.load(open(os.path.join(evaluation.uri, "metrics.json")))["AP"]


@pytest.fixture(scope="module")
def main_run(tmp_path_factory):
  """The main job as `make run` runs it (built-in sample data, sample/tiny, seed 0)."""
  root = tmp_path_factory.mktemp("e2e")
  output_dir = str(root / "run")
  argv = ["--runner=local", f"--output_dir={output_dir}", f"--min_ap={SAMPLE_AP_FLOOR}",
          "--direct_mode=in_memory"]
  # Convert only, then the whole pipeline: the data stage must come from the cache.
  assert cli.main(argv + ["--to_stage=data"]) == 0
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed), validating_in_process():
    assert cli.main(argv) == 0
  return {"root": root, "output_dir": output_dir, "argv": argv, "printed": printed.getvalue(),
          "metadata": os.path.join(output_dir, "metadata.sqlite")}


def test_accuracy_gate_main_job(main_run):
  """Learning works: the shipped sample config reaches the floor (and was blessed by it)."""
  ap = _ap(main_run["output_dir"])
  assert ap >= SAMPLE_AP_FLOOR, f"main job AP {ap:.4f} < floor {SAMPLE_AP_FLOOR}"
  assert "Blessed: yes" in main_run["printed"]


def test_full_run_records_every_stage(main_run):
  store = metadata_queries.open_store(main_run["metadata"])
  data_states = [e.last_known_state for e in _executions(store, stages.DATA.node_id)]
  assert data_states == [metadata_queries.COMPLETE, metadata_queries.CACHED]
  for node in [stage.node_id for stage in stages.STAGES[1:]]:
    states = [e.last_known_state for e in _executions(store, node)]
    assert states == [metadata_queries.COMPLETE], node
  pushed = metadata_queries.latest_pushed_model(store)
  destination = metadata_queries.custom_properties(pushed)["pushed_destination"]
  assert os.path.exists(os.path.join(destination, "saved_model.pb"))
  assert os.path.dirname(destination) == os.path.join(main_run["output_dir"], "serving",
                                                      "retinanet")
  # The end-of-run summary names the pushed model, the AP and the MLMD store.
  assert f"Pushed model: {destination}" in main_run["printed"]
  assert "COCO AP@[.5:.95] = " in main_run["printed"]
  assert f"MLMD: {main_run['metadata']}" in main_run["printed"]
  # The sample data fits the sample config's anchors: the statistics stage says so.
  [stats] = store.get_artifacts_by_type("components.BoxStatistics")
  coverage = metadata_queries.custom_properties(stats)["coverage"]
  assert coverage >= 0.9 and metadata_queries.custom_properties(stats)["coverage_ok"] == 1
  assert f"Anchor coverage: {coverage:.1%}" in main_run["printed"]
  [model] = store.get_artifacts_by_type("Model")
  assert metadata_queries.custom_properties(model)["anchor_fit_decision"].startswith(
      f"coverage {coverage:.1%} >= floor 90%")
  [evaluation] = store.get_artifacts_by_type("ModelEvaluation")
  metrics = json.load(open(os.path.join(evaluation.uri, "metrics.json")))
  assert set(metrics) >= {"AP", "AP50", "AP75", "APs", "APm", "APl", "ARmax1", "ARmax10",
                          "ARmax100", "ARs", "ARm", "ARl"}
  assert metadata_queries.custom_properties(evaluation)["AP"] == pytest.approx(metrics["AP"])
  # The evaluation report: in the artifact, in MLMD and in the summary, with sample images.
  report = metadata_queries.custom_properties(evaluation)["report"]
  assert report == os.path.join(evaluation.uri, "report.html")
  assert f"Evaluation report: {report}" in main_run["printed"]
  assert open(report).read().count("<img") >= 3


def test_partial_run_reuses_the_trained_model(main_run):
  store = metadata_queries.open_store(main_run["metadata"])
  [model] = store.get_artifacts_by_type("Model")
  complete = metadata_queries.COMPLETE
  assert len(_executions(store, stages.TRAINER.node_id, complete)) == 1
  argv = main_run["argv"] + ["--from_stage=evaluator", "--to_stage=evaluator",
                             "--postprocess", "nms_mode=global_soft"]
  assert cli.main(argv) == 0
  store = metadata_queries.open_store(main_run["metadata"])
  assert len(store.get_artifacts_by_type("Model")) == 1     # nothing retrained
  evaluators = _executions(store, stages.EVALUATOR.node_id, complete)
  assert len(evaluators) == 2
  # The Trainer was skipped (recorded CACHED by the partial run), not run again.
  assert len(_executions(store, stages.TRAINER.node_id, complete)) == 1
  inputs = [e.artifact_id for e in store.get_events_by_execution_ids([evaluators[-1].id])
            if e.type == e.INPUT]
  assert model.id in inputs                                 # the same MLMD artifact id
  props = metadata_queries.custom_properties(evaluators[-1])
  assert json.loads(str(props["postprocess_overrides"])) == {"nms_mode": "global_soft"}


def test_lineage_lists_every_stage(main_run):
  store = metadata_queries.open_store(main_run["metadata"])
  text = "\n".join(lineage.lineage_lines(store))
  for node in [stage.node_id for stage in stages.STAGES]:
    assert f"<- {node}" in text
  assert "AP=" in text and "train_images_in=" in text and "config: sample/tiny" in text
  assert "BoxStatistics" in text and "coverage=" in text and "anchor_fit_decision=" in text
  assert lineage.main(["--metadata", main_run["metadata"]]) == 0


def test_finetuning_pipeline_on_other_categories(main_run):
  root = main_run["root"]
  dataset = sample_data.generate_sample_dataset(
      str(root / "custom"), num_train=200, num_val=50, seed=5,
      categories=sample_data.custom_categories({101: "circle", 205: "square", 333: "triangle"}))
  store = metadata_queries.open_store(main_run["metadata"])
  pushed = metadata_queries.custom_properties(
      metadata_queries.latest_pushed_model(store))["pushed_destination"]
  output_dir = str(root / "finetune")
  argv = ["--runner=local", f"--output_dir={output_dir}", "--pipeline_name=finetune",
          f"--min_ap={FINETUNE_AP_FLOOR}", *FINETUNE, *_dataset_flags(dataset),
          "--finetune_from=latest", f"--base_metadata={main_run['metadata']}"]
  assert cli.main(argv) == 0
  ap = _ap(output_dir)
  assert ap >= FINETUNE_AP_FLOOR, f"fine-tuning AP {ap:.4f} < floor {FINETUNE_AP_FLOOR}"
  store = metadata_queries.open_store(os.path.join(output_dir, "metadata.sqlite"))
  models = store.get_artifacts_by_type("Model")
  # The base model was imported into this pipeline's MLMD from the main run's serving dir.
  assert [m.uri for m in models if m.uri == pushed] == [pushed]
  [model] = [m for m in models if m.uri != pushed]
  props = metadata_queries.custom_properties(model)
  assert props["num_classes"] == 3
  assert props["finetune_restored"] > 0 and props["finetune_reinitialized"] > 0
  label_map = json.load(open(model_dir_lib.label_map_path(model.uri)))
  assert [e["category_id"] for e in label_map] == [101, 205, 333]
  pushed_ft = metadata_queries.latest_pushed_model(store)
  destination = metadata_queries.custom_properties(pushed_ft)["pushed_destination"]
  assert os.path.dirname(destination) == os.path.join(output_dir, "serving", "finetune")
