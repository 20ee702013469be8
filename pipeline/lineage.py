"""Prints the lineage of a pushed model from MLMD.

    python -m pipeline.lineage --metadata runs/local/metadata.sqlite [--pushed_model_id N]

For the pushed model (the latest by default) it walks back through the
executions that produced it: Pusher <- Evaluator (AP, blessing) <- Trainer
(config, training run) <- BoxStatisticsGen (anchor coverage) <- CocoExampleGen (data
artifact and its statistics). For continuous training it first says which spans the
model was trained on, its parent (the warm start's model) and the schema its data was
validated against.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional, Sequence

from pipeline import metadata_queries, stages
from retinanet import console, layout

# Custom properties worth showing per artifact type (None: all of them).
_SHOWN = {
    "Examples": ("span", *(layout.ExamplesKeys.examples(s) for s in ("train", "val")),
                 *(layout.ExamplesKeys.shards(s) for s in ("train", "val")),
                 layout.ExamplesKeys.NUM_CLASSES),
    "ConversionReport": None,
    "BoxStatistics": None,
    "LabelMap": (layout.ExamplesKeys.NUM_CLASSES,),
    "Model": (layout.ModelKeys.FINAL_STEP, layout.ModelKeys.FINAL_TOTAL_LOSS,
              layout.ModelKeys.TRAIN_IMAGES_PER_SECOND, layout.ModelKeys.STRATEGY,
              layout.ModelKeys.NUM_CLASSES, layout.ModelKeys.ANCHOR_FIT_DECISION,
              layout.ModelKeys.TRAINED_SPANS, layout.ModelKeys.FINETUNE_SOURCE),
    "Schema": None,
    "ExampleAnomalies": None,
    "ModelRun": (layout.ModelKeys.WALL_TIME_SECONDS,),
    "ModelEvaluation": ("AP", "AP50", "AP75", layout.EvaluationKeys.NUM_IMAGES,
                        layout.EvaluationKeys.SPLIT, layout.EvaluationKeys.BASELINE_AP),
    "ModelBlessing": (layout.BlessingKeys.BLESSED, layout.BlessingKeys.REASON,
                      layout.BlessingKeys.AP),
    "PushedModel": (layout.PushKeys.PUSHED, layout.PushKeys.DESTINATION, layout.PushKeys.VERSION,
                    layout.PushKeys.REASON),
}
_TFX_BOOKKEEPING = ("is_external", "tfx_version")


def _describe(artifact: metadata_queries.ArtifactInfo) -> str:
  keys = _SHOWN.get(artifact.type.split(".")[-1], ())
  props = {k: v for k, v in artifact.properties.items()
           if not k.startswith("__") and k not in _TFX_BOOKKEEPING and (keys is None or k in keys)}
  shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in sorted(props.items()))
  return f"{artifact.type} #{artifact.id} ({artifact.created}) {artifact.uri}" + (
      f"\n        {shown}" if shown else "")


def continuous_lines(executions: Sequence[metadata_queries.ExecutionInfo]) -> List[str]:
  """Spans, parent model and schema of a continuously trained model (none otherwise)."""
  by_node: dict = {}
  for execution in executions:  # nearest first: this model's, not its parent's
    by_node.setdefault(execution.node, execution)
  trainer, validator = by_node.get(stages.TRAINER.node_id), by_node.get(stages.VALIDATION.node_id)
  if trainer is None or validator is None:
    return []
  [model] = trainer.outputs.get("model", [None])
  spans = model.properties.get(layout.ModelKeys.TRAINED_SPANS, "?") if model else "?"
  parents = trainer.inputs.get("base_model") or []
  parent = (f"Model #{parents[0].id} {parents[0].uri}" if parents
            else "none (trained from scratch)")
  schemas = validator.inputs.get("current_schema") or validator.outputs.get("schema") or []
  schema = "?"
  if schemas:
    p = schemas[0].properties
    accepted = p.get(layout.ValidationKeys.ACCEPTED)
    schema = (f"Schema #{schemas[0].id} (from span {p.get(layout.ValidationKeys.SCHEMA_SPAN)}"
              + (f", accepted: {accepted}" if accepted else "") + f") {schemas[0].uri}")
  return [f"  spans trained on: {spans}", f"  parent model: {parent}",
          f"  validated against: {schema}"]


def lineage_lines(store, pushed_model_id: Optional[int] = None) -> List[str]:
  """The lineage report of one pushed model as lines of text."""
  if pushed_model_id is None:
    pushed = metadata_queries.latest_pushed_model(store)
    if pushed is None:
      raise LookupError("no pushed model (pushed=1) is recorded in this MLMD store")
    pushed_model_id = pushed.id
  walker = metadata_queries.Lineage(store)
  artifact = walker.artifact_info(store.get_artifacts_by_id([pushed_model_id])[0])
  lines = [f"Lineage of {_describe(artifact)}"]
  executions = list(walker.upstream(pushed_model_id))
  lines += continuous_lines(executions)
  for execution in executions:
    lines.append(f"  <- {execution.node} (execution #{execution.id}, {execution.state}, "
                 f"{execution.created})")
    config_json = execution.properties.get("config_json")
    if config_json:
      config = json.loads(str(config_json))
      model = config.get("model", {})
      train = config.get("train", {})
      lines.append(f"     config: {config.get('name')}: ResNet-{model.get('backbone', {}).get('depth')}"
                   f" {model.get('input_size')} classes={model.get('num_classes')}"
                   f" steps={train.get('total_steps')} batch={train.get('global_batch_size')}"
                   f" precision={train.get('mixed_precision')}")
    for key, artifacts in sorted(execution.inputs.items()):
      for a in artifacts:
        lines.append(f"     in  {key}: {_describe(a)}")
    for key, artifacts in sorted(execution.outputs.items()):
      for a in artifacts:
        lines.append(f"     out {key}: {_describe(a)}")
  return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--metadata", required=True, help="MLMD sqlite file of the run.")
  parser.add_argument("--pushed_model_id", type=int,
                      help="MLMD id of the PushedModel artifact (default: the latest pushed).")
  console.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  try:
    store = metadata_queries.open_store(args.metadata)
    print("\n".join(lineage_lines(store, args.pushed_model_id)))
  except LookupError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
