"""DataValidator: a data span against the schema of the first span (TFDV), before training.

A thin adapter around `data.validation`. Without a current schema (the first span) it
infers one from the span's statistics. Otherwise it validates the span and writes
`anomalies.json` into an ExampleAnomalies artifact; the anomaly kinds, the span and
whether they block training are MLMD custom properties of it. Anomalies named in
`accept_anomalies` are accepted knowingly: the schema is updated (ranges widened,
category ids added, the drift reference moved to this span) and the acceptance is
recorded on both artifacts. Blocking anomalies do not fail this component (so the report
is published in MLMD); the Trainer refuses to train on them.

The Schema artifact holds TFX's `schema.pbtxt` and the drift reference statistics. It
is marked `changed=1` when inferred or updated, 0 when it is the current schema copied
(components/resolvers.CurrentSchemaStrategy reads only changed ones).
"""
import logging
import os

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components.artifacts import BoxStatistics, LabelMap, examples_span
from components.resolvers import SCHEMA_CHANGED
from data import validation
from retinanet import coco
from retinanet import fileio
from retinanet import layout

logger = logging.getLogger(__name__)


def _write_schema(artifact, schema, reference, *, span: int, schema_span: int, changed: bool,
                  accepted: str) -> None:
  validation.write_text_proto(os.path.join(artifact.uri, validation.SCHEMA_FILE), schema)
  validation.write_text_proto(
      os.path.join(artifact.uri, validation.REFERENCE_STATISTICS_FILE), reference)
  artifact.set_int_custom_property(SCHEMA_CHANGED, int(changed))
  artifact.set_int_custom_property(layout.ValidationKeys.SPAN, span)
  artifact.set_int_custom_property(layout.ValidationKeys.SCHEMA_SPAN, schema_span)
  artifact.set_string_custom_property(layout.ValidationKeys.ACCEPTED, accepted)


@component
def DataValidator(  # pylint: disable=invalid-name
    examples: InputArtifact[standard_artifacts.Examples],
    label_map: InputArtifact[LabelMap],
    statistics: InputArtifact[BoxStatistics],
    schema: OutputArtifact[standard_artifacts.Schema],
    anomalies: OutputArtifact[standard_artifacts.ExampleAnomalies],
    current_schema: InputArtifact[standard_artifacts.Schema] = None,
    accept_anomalies: Parameter[str] = "",
    class_linf: Parameter[float] = validation.ValidationThresholds.class_linf,
    box_size_js: Parameter[float] = validation.ValidationThresholds.box_size_js,
    range_margin: Parameter[float] = validation.ValidationThresholds.range_margin,
    code_version: Parameter[str] = "",
) -> None:
  """Infers the schema from the first span or validates this one against the current one.

  `accept_anomalies`: comma-separated anomaly kinds (data/validation.ANOMALY_KINDS) to
  accept. `code_version` only keys the cache (pipeline/code_version.py).
  """
  del code_version
  thresholds = validation.ValidationThresholds(class_linf, box_size_js, range_margin)
  accept = validation.check_accept_list([k for k in accept_anomalies.split(",") if k])
  span = examples_span(examples)
  labels = coco.load_label_map(os.path.join(label_map.uri, layout.LABEL_MAP_FILE))
  report = fileio.read_json(os.path.join(statistics.uri, layout.BOX_STATISTICS_REPORT_FILE))
  stats = validation.span_statistics(report, labels)
  found, accepted = [], []
  if current_schema is None:
    inferred = validation.infer_schema(stats, thresholds)
    _write_schema(schema, inferred, stats, span=span, schema_span=span, changed=True,
                  accepted="")
    logger.info("Data validation: schema inferred from span %d (%d category ids)", span,
                len(labels.category_ids))
    schema_span = span
  else:
    schema_span = current_schema.get_int_custom_property(layout.ValidationKeys.SCHEMA_SPAN)
    current = validation.read_schema(os.path.join(current_schema.uri, validation.SCHEMA_FILE))
    reference = validation.read_statistics(
        os.path.join(current_schema.uri, validation.REFERENCE_STATISTICS_FILE))
    found = validation.validate(stats, current, reference)
    accepted, blocking = validation.split_accepted(found, accept)
    if accepted and not blocking:
      updated, move_reference = validation.accept(current, stats, accepted, thresholds)
      _write_schema(schema, updated, stats if move_reference else reference, span=span,
                    schema_span=span if move_reference else schema_span, changed=True,
                    accepted=validation.kinds_text(accepted))
    else:
      _write_schema(schema, current, reference, span=span, schema_span=schema_span,
                    changed=False, accepted="")
  for line in validation.report_lines(span, found, accepted):
    (logger.warning if found else logger.info)(line)
  payload = validation.anomalies_json(span, found, accepted, schema_span)
  path = os.path.join(anomalies.uri, validation.ANOMALIES_FILE)
  fileio.write_json(path, payload)
  anomalies.split_names = '["train", "val"]'
  anomalies.span = span
  anomalies.set_int_custom_property(layout.ValidationKeys.SPAN, span)
  anomalies.set_string_custom_property(layout.ValidationKeys.ANOMALY_KINDS,
                                       validation.kinds_text(found))
  anomalies.set_string_custom_property(layout.ValidationKeys.ACCEPTED,
                                       validation.kinds_text(accepted))
  anomalies.set_int_custom_property(layout.ValidationKeys.BLOCKING,
                                    int(bool(payload["blocking"])))
  anomalies.set_string_custom_property(layout.ValidationKeys.MESSAGE,
                                       validation.blocking_message(payload, path))
