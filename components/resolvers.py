"""Resolver strategies of the continuous-training pipeline: which artifacts of earlier runs
a run reads from MLMD.

- `SpanWindowStrategy`: the Examples of the last N spans that passed data validation, the
  newest conversion of each (TFX's SpanRangeStrategy with a rolling range, but it reads
  the `span` property the data stage sets, never returns two conversions of one span, and
  leaves out a span whose validation blocked).
- `FirstSpanStrategy`: the Examples of the first span: its val split is the fixed held-out
  set that catches forgetting.
- `CurrentSchemaStrategy`: the newest Schema that DataValidator inferred or updated while
  validating an earlier span than this run's (its unchanged copies are skipped).
- `WarmStartStrategy`: the newest blessed Model trained on earlier spans than this run's:
  the warm start and the Evaluator's baseline.
- `LatestBlessedStrategy`: the newest blessed Model: the Evaluator's baseline outside
  continuous training (TFX's LatestBlessedModelStrategy, whose module imports every
  standard TFX component: TFMA, TFDV, Keras Tuner; 10.7 s without cached bytecode).

CurrentSchemaStrategy and WarmStartStrategy look only at earlier spans so that a rerun of
a span resolves exactly what its first run did, and is served from the cache end to end.
The selections themselves are pure functions (`newest_per_span`, `passed_spans`,
`current_schema_index`, `warm_start_index`, `latest_blessed_index`).
Custom strategies run in the local orchestrator; Vertex's compiler takes only TFX's own
(pipeline/pipeline.py leaves them out there).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Set, Tuple

from tfx import types
from tfx.dsl.components.common import resolver

from components.artifacts import examples_span as _span
from retinanet import layout

SCHEMA_CHANGED = "changed"  # DataValidator's Schema: 1 = inferred or updated, 0 = a copy


def newest_per_span(items: Sequence[Tuple[int, int]], num_spans: int,
                    first: bool = False) -> List[int]:
  """Indices into `items` ((span, artifact id) pairs) of the newest artifact of each of the
  last `num_spans` spans (or of the first span), oldest span first. Span 0 (no span) is
  never chosen."""
  newest: Dict[int, Tuple[int, int]] = {}
  for index, (span, artifact_id) in enumerate(items):
    if span > 0 and (span not in newest or artifact_id > newest[span][0]):
      newest[span] = (artifact_id, index)
  spans = sorted(newest)
  chosen = spans[:1] if first else spans[-num_spans:] if num_spans > 0 else []
  return [newest[span][1] for span in chosen]


def current_schema_index(items: Sequence[Tuple[int, int, int]], span: int) -> Optional[int]:
  """Index into `items` ((changed, validated span, artifact id)) of the newest changed
  schema that validated an earlier span than `span`."""
  changed = [(artifact_id, i) for i, (flag, validated, artifact_id) in enumerate(items)
             if flag and validated < span]
  return max(changed)[1] if changed else None


def warm_start_index(models: Sequence[Tuple[int, int]], blessed_ids: Sequence[int],
                     span: int) -> Optional[int]:
  """Index into `models` ((artifact id, newest span trained on)) of the newest blessed
  model trained on earlier spans than `span`."""
  blessed = set(blessed_ids)
  candidates = [(model_id, i) for i, (model_id, trained) in enumerate(models)
                if model_id in blessed and 0 < trained < span]
  return max(candidates)[1] if candidates else None


def latest_blessed_index(model_ids: Sequence[int], blessed_ids: Sequence[int]) -> Optional[int]:
  """Index into `model_ids` of the newest (highest id) blessed model."""
  blessed = set(blessed_ids)
  candidates = [(model_id, i) for i, model_id in enumerate(model_ids) if model_id in blessed]
  return max(candidates)[1] if candidates else None


def _blessing_of_model(blessings: Sequence[types.Artifact]) -> Dict[int, types.Artifact]:
  """{blessed Model id: its newest blessing ModelBlessing} (the Evaluator's properties)."""
  return {b.get_int_custom_property(layout.BlessingKeys.CURRENT_MODEL_ID): b
          for b in sorted(blessings, key=lambda b: b.id)
          if b.get_int_custom_property(layout.BlessingKeys.BLESSED) == 1}


def _this_span(input_dict: Dict[str, List[types.Artifact]]) -> int:
  """The span of this run's Examples (the `examples` channel: the data stage's output)."""
  return max((_span(a) for a in input_dict.get("examples", [])), default=0)


def passed_spans(validations: Sequence[Tuple[int, int, int]]) -> Set[int]:
  """Spans whose newest validation ((span, artifact id, blocking)) did not block."""
  newest: Dict[int, Tuple[int, int]] = {}
  for span, artifact_id, blocking in validations:
    if span not in newest or artifact_id > newest[span][0]:
      newest[span] = (artifact_id, blocking)
  return {span for span, (_, blocking) in newest.items() if not blocking}


class SpanWindowStrategy(resolver.ResolverStrategy):
  """The Examples of the last `num_spans` spans that passed data validation (the newest
  conversion of each), oldest first. `anomalies`: DataValidator's ExampleAnomalies."""

  def __init__(self, num_spans: int = 1):
    self._num_spans = int(num_spans)

  def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                        ) -> Optional[Dict[str, List[types.Artifact]]]:
    del store
    passed = passed_spans(
        [(_span(a), a.id, a.get_int_custom_property(layout.ValidationKeys.BLOCKING))
         for a in input_dict["anomalies"]])
    examples = input_dict["examples"]
    chosen = newest_per_span(
        [(_span(a) if _span(a) in passed else 0, a.id) for a in examples], self._num_spans)
    return {"examples": [examples[i] for i in chosen], "anomalies": []}


class FirstSpanStrategy(resolver.ResolverStrategy):
  """The first span's Examples (its newest conversion)."""

  def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                        ) -> Optional[Dict[str, List[types.Artifact]]]:
    del store
    return {key: [artifacts[i] for i in newest_per_span(
        [(_span(a), a.id) for a in artifacts], 1, first=True)]
            for key, artifacts in input_dict.items()}


class CurrentSchemaStrategy(resolver.ResolverStrategy):
  """The schema to validate this run's span against; none before the first span."""

  def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                        ) -> Optional[Dict[str, List[types.Artifact]]]:
    del store
    schemas = input_dict["schema"]
    index = current_schema_index(
        [(a.get_int_custom_property(SCHEMA_CHANGED),
          a.get_int_custom_property(layout.ValidationKeys.SPAN), a.id) for a in schemas],
        _this_span(input_dict))
    return {"schema": [] if index is None else [schemas[index]],
            "examples": input_dict.get("examples", [])}


class WarmStartStrategy(resolver.ResolverStrategy):
  """The newest blessed model trained on earlier spans (TFX's LatestBlessedModelStrategy,
  restricted to earlier spans); none before the first blessing."""

  def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                        ) -> Optional[Dict[str, List[types.Artifact]]]:
    del store
    models = input_dict["model"]
    blessed = list(_blessing_of_model(input_dict["model_blessing"]))
    trained = [(m.id, m.get_int_custom_property(layout.ModelKeys.NEWEST_SPAN)) for m in models]
    index = warm_start_index(trained, blessed, _this_span(input_dict))
    return {"model": [] if index is None else [models[index]],
            "model_blessing": [], "examples": input_dict.get("examples", [])}


class LatestBlessedStrategy(resolver.ResolverStrategy):
  """The newest blessed Model and its ModelBlessing; none before the first blessing. What
  TFX's LatestBlessedModelStrategy returns, for the local orchestrator (Vertex's compiler
  knows only TFX's class, which pipeline/pipeline.py uses there)."""

  def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                        ) -> Optional[Dict[str, List[types.Artifact]]]:
    del store
    models = input_dict["model"]
    blessing_of = _blessing_of_model(input_dict["model_blessing"])
    index = latest_blessed_index([m.id for m in models], list(blessing_of))
    if index is None:
      return {"model": [], "model_blessing": []}
    return {"model": [models[index]], "model_blessing": [blessing_of[models[index].id]]}
