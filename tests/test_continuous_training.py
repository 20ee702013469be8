"""Continuous training over data spans, through the CLI as a user runs it (issue 26):

  run 1: span 1, trained from scratch, the schema inferred, blessed and pushed;
  rerun: no new span, every stage served from the cache;
  run 2: span 2, validated, warm-started from run 1's blessed model, trained on the window
         of spans 1-2, blessed and pushed;
  run 3: span 3 has a planted unknown category id: the run stops before training, the
         anomaly named in the console summary and in MLMD;
  run 4: span 4 no longer labels one class (its class drift accepted knowingly) and is
         trained alone (window 1): the held-out set (span 1's val) shows that class
         forgotten, and the blessing refuses the model;
  run 5: an empty span is refused before training.
"""
import json
import os

import pytest

from data import sample_data

pytestmark = pytest.mark.e2e

# Small enough for a test, long enough to learn the shapes (the finetuning e2e test's 150
# steps of sample/tiny), so that forgetting a class shows on the held-out set.
SMALL = ["--set", "model.input_size=[128, 128]", "--set", "train.total_steps=150",
         "--set", "train.checkpoint_every=150", "--set", "train.log_every=50",
         "--set", "optimizer.warmup_steps=20", "--set", "optimizer.boundaries=[110, 135]",
         "--direct_mode=in_memory", "--min_ap=0", "--max_ap_regression=1"]
CONTINUE_STEPS = 20


def _edit(root, split, edit):
  path = os.path.join(root, "annotations", f"instances_{split}.json")
  with open(path) as f:
    data = json.load(f)
  edit(data)
  with open(path, "w") as f:
    json.dump(data, f)


def _drop(drops, number, plant_unknown_category=False, unlabelled_category=None):
  root = str(drops / f"span-{number}")
  sample_data.generate_sample_dataset(root, num_train=48, num_val=16, image_size=(128, 128),
                                      seed=number)
  if plant_unknown_category:
    def plant(data):
      data["categories"].append({"id": 99, "name": "ufo"})
      for annotation in data["annotations"][::4]:
        annotation["category_id"] = 99
    _edit(root, "train", plant)
  if unlabelled_category is not None:  # the class is still in the images, no longer labelled
    def unlabel(data):
      data["annotations"] = [a for a in data["annotations"]
                             if a["category_id"] != unlabelled_category]
    for split in ("train", "val"):
      _edit(root, split, unlabel)


def _store(metadata):
  from pipeline import metadata_queries  # pylint: disable=g-import-not-at-top
  return metadata_queries.open_store(metadata)


def _latest(store, type_name):
  return max(store.get_artifacts_by_type(type_name), key=lambda a: a.id)


def _trainer_inputs(store, model):
  """The Examples spans and base models the Trainer execution of `model` read."""
  [event] = [e for e in store.get_events_by_artifact_ids([model.id])
             if e.type == e.OUTPUT]
  inputs = [e.artifact_id for e in store.get_events_by_execution_ids([event.execution_id])
            if e.type == e.INPUT]
  artifacts = store.get_artifacts_by_id(inputs)
  types = {t.id: t.name for t in store.get_artifact_types()}
  spans = sorted(a.properties["span"].int_value for a in artifacts
                 if types[a.type_id] == "Examples")
  bases = [a.id for a in artifacts if types[a.type_id] == "Model"]
  return spans, bases


def test_spans_warm_start_window_gate_cache_and_forgetting(tmp_path, capsys):
  from pipeline import cli  # pylint: disable=g-import-not-at-top
  drops = tmp_path / "drops"
  argv = ["--runner=local", f"--output_dir={tmp_path / 'run'}", "--dataset=spans",
          f"--span_pattern={drops}/span-{{SPAN}}", f"--continue_steps={CONTINUE_STEPS}",
          *SMALL]
  lenient = argv + ["--window=2", "--max_held_out_regression=1", "--max_class_regression=1"]
  metadata = str(tmp_path / "run" / "metadata.sqlite")

  _drop(drops, 1)
  assert cli.main(lenient) == 0
  out = capsys.readouterr().out
  assert "Data validation: span 1 matches the schema" in out and "Pushed model:" in out
  store = _store(metadata)
  first_model = _latest(store, "Model")
  assert _trainer_inputs(store, first_model) == ([1], [])  # from scratch
  assert first_model.custom_properties["final_step"].int_value == 150

  assert cli.main(lenient) == 0  # no new span: everything from the cache
  out = capsys.readouterr().out
  for node in ("CocoExampleGen", "BoxStatisticsGen", "DataValidator", "RetinaNetTrainer",
               "RetinaNetEvaluator", "RetinaNetPusher"):
    assert f"{node:<20} cached" in out, node

  _drop(drops, 2)
  assert cli.main(lenient) == 0
  out = capsys.readouterr().out
  assert "Data validation: span 2 matches the schema" in out and "Pushed model:" in out
  assert "Held-out (first span) AP" in out
  store = _store(metadata)
  second_model = _latest(store, "Model")
  assert _trainer_inputs(store, second_model) == ([1, 2], [first_model.id])
  # Warm start: continue_steps steps from the blessed model, not the config's 150.
  assert second_model.custom_properties["final_step"].int_value == CONTINUE_STEPS
  assert "finetune_source" in second_model.custom_properties
  evaluation = _latest(store, "ModelEvaluation")
  assert {"held_out_AP", "baseline_held_out_AP"} <= set(evaluation.custom_properties)
  # Lineage of each pushed model: its spans, its parent model, the schema it was checked with.
  from pipeline import lineage  # pylint: disable=g-import-not-at-top
  pushed = sorted((a for a in store.get_artifacts_by_type("PushedModel")
                   if a.custom_properties["pushed"].int_value == 1), key=lambda a: a.id)
  assert len(pushed) == 2
  assert lineage.main(["--metadata", metadata, f"--pushed_model_id={pushed[0].id}"]) == 0
  first = capsys.readouterr().out
  assert "spans trained on: 1\n" in first and "parent model: none (trained from scratch)" in first
  assert "validated against: Schema #" in first and "(from span 1)" in first
  assert lineage.main(["--metadata", metadata, f"--pushed_model_id={pushed[1].id}"]) == 0
  second = capsys.readouterr().out
  assert "spans trained on: 1,2\n" in second
  assert f"parent model: Model #{first_model.id} " in second and "(from span 1)" in second

  _drop(drops, 3, plant_unknown_category=True)
  with pytest.raises(RuntimeError, match="unknown_category_id"):
    cli.main(lenient)
  out = capsys.readouterr().out
  assert "Data validation: REFUSED span 3" in out and "category id 99" in out
  store = _store(metadata)
  anomalies = _latest(store, "ExampleAnomalies")
  assert anomalies.custom_properties["blocking"].int_value == 1
  # A quarter of the boxes moved to the new id: the class shares drift as well.
  kinds = anomalies.custom_properties["anomaly_kinds"].string_value.split(",")
  assert "unknown_category_id" in kinds
  assert _latest(store, "Model").id == second_model.id  # nothing was trained

  # Run 4: the class the blessed model detects best on the held-out set is no longer
  # labelled; trained on that span alone, the model forgets it.
  with open(os.path.join(evaluation.uri, "held_out_per_class_ap.json")) as f:
    per_class = [c for c in json.load(f)["model"] if c["AP"] is not None]
  forgotten = max(per_class, key=lambda c: c["AP"])
  assert forgotten["AP"] > 0.1, per_class
  _drop(drops, 4, unlabelled_category=forgotten["category_id"])
  with pytest.raises(RuntimeError, match="class_drift"):  # first refused: the class is gone
    cli.main(argv + ["--window=1"])
  capsys.readouterr()
  # The mean held-out AP may still rise (the other classes learn more): the gate is per class.
  assert cli.main(argv + ["--window=1", "--accept_anomaly=class_drift",
                          "--continue_steps=60", "--max_held_out_regression=1",
                          "--max_class_regression=0.1"]) == 0
  out = capsys.readouterr().out
  assert "Not pushed" in out and "forgetting" in out
  store = _store(metadata)
  blessing = _latest(store, "ModelBlessing")
  assert blessing.custom_properties["blessed"].int_value == 0
  reason = blessing.custom_properties["reason"].string_value
  assert "held-out AP per class" in reason and forgotten["name"] in reason, reason
  with open(os.path.join(_latest(store, "ModelEvaluation").uri,
                         "held_out_per_class_ap.json")) as f:
    held_out = json.load(f)
  drops_by_class = {b["category_id"]: b["AP"] - (m["AP"] or 0.0)
                    for m, b in zip(held_out["model"], held_out["baseline"])
                    if b["AP"] is not None}
  # The regression is the unlabelled class: its AP fell most, by more than the threshold.
  assert max(drops_by_class, key=drops_by_class.get) == forgotten["category_id"], held_out
  assert drops_by_class[forgotten["category_id"]] > 0.05, held_out
  schema = _latest(store, "Schema")
  assert schema.custom_properties["accepted_anomalies"].string_value == "class_drift"

  # Run 5: an empty drop converts and is refused before training as empty_span.
  sample_data.generate_sample_dataset(str(drops / "span-5"), num_train=0, num_val=0,
                                      image_size=(128, 128), seed=5)
  with pytest.raises(RuntimeError, match="empty_span: the span has no images"):
    cli.main(lenient)
  assert "REFUSED span 5" in capsys.readouterr().out
