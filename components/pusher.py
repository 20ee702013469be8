"""RetinaNetPusher: push exactly the blessed SavedModel to a versioned serving dir.

The Pusher never re-exports. It pushes the bytes the Evaluator evaluated (the
blessing records their path and content digest) after checking that

  * the blessing is for this Model artifact (its MLMD id),
  * the post-processing asked of this push equals the one that was evaluated
    (so `--from_stage=pusher --postprocess ...` cannot push unevaluated NMS),
  * the SavedModel's digest still equals the evaluated one,

and the staged copy passes pre-push validation: the evaluated bytes are loaded in a
fresh process and must answer a canned batch on every signature with well-formed
outputs (retinanet/serving/validate.py) before the version becomes visible. The
Evaluator runs that validation beside its evaluation and records it with the digest
it ran on; the Pusher then checks that the staged copy has that digest. A blessing
without it (an older Evaluator) is validated here, on the staged copy.
Whenever something fails, nothing is pushed and the reason is recorded on
the PushedModel artifact (`pushed` 0, `reason`).

`export_formats` ("onnx,tflite,tflite_int8") adds portable formats to the
same version, under `<version>/formats/` with a `manifest.json`: each is
written from the blessed model and checked against its SavedModel on the
canned images (retinanet/serving/portable.py) before the push; a format that
cannot be written (ONNX with soft-NMS) or disagrees stops the whole push.
MLMD records each format's sha256 (`digest_<format>`) and the manifest
(`export_formats`). The SavedModel digest covers everything but `formats/`.
"""

import json
import logging
import os
import shutil
import tempfile
from typing import Any, Dict, Optional, Tuple

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from retinanet import layout

logger = logging.getLogger(__name__)


def push_refusal(model_id: int, blessing_model_id: Optional[int], wanted_postprocess: str,
                 blessed_postprocess: str, blessed_digest: str, current_digest: str) -> str:
  """Why the blessed SavedModel must not be pushed; "" when it may."""
  if blessing_model_id != model_id:
    return (f"the blessing is for Model artifact {blessing_model_id}, not {model_id}: "
            "evaluate this model first (--from_stage=evaluator)")
  if not blessed_digest:
    return "the blessing records no SavedModel digest (an older Evaluator): rerun the Evaluator"
  if wanted_postprocess != blessed_postprocess:
    return (f"the push asks for post-processing {wanted_postprocess} but the blessing evaluated "
            f"{blessed_postprocess}: rerun from the Evaluator with these --postprocess settings "
            "(--from_stage=evaluator)")
  if current_digest != blessed_digest:
    return (f"the SavedModel changed after its evaluation (digest {current_digest[:12]} != "
            f"blessed {blessed_digest[:12]}): rerun the Evaluator")
  return ""


@component
def RetinaNetPusher(  # pylint: disable=invalid-name
    model: InputArtifact[standard_artifacts.Model],
    model_blessing: InputArtifact[standard_artifacts.ModelBlessing],
    pushed_model: OutputArtifact[standard_artifacts.PushedModel],
    serving_dir: Parameter[str],
    postprocess_overrides: Parameter[str] = "{}",
    validation_timeout_seconds: Parameter[int] = 600,
    export_formats: Parameter[str] = "",
    code_version: Parameter[str] = "",
) -> None:
  """Pushes the blessed SavedModel of `model` to `<serving_dir>/<version>/` (module docstring)."""
  del code_version
  from retinanet.serving import export, portable, validate, versioning  # pylint: disable=g-import-not-at-top

  def not_pushed(reason: str, level: int = logging.ERROR) -> None:
    logger.log(level, "Not pushing %s: %s", model.uri, reason)
    pushed_model.set_int_custom_property(layout.PushKeys.PUSHED, 0)
    pushed_model.set_string_custom_property(layout.PushKeys.REASON, reason)

  if model_blessing.get_int_custom_property(layout.BlessingKeys.BLESSED) != 1:
    reason = model_blessing.get_string_custom_property(layout.PushKeys.REASON) or "model not blessed"
    not_pushed(f"not blessed: {reason}", logging.INFO)
    return

  source = model_blessing.get_string_custom_property(layout.BlessingKeys.SAVED_MODEL_DIR)
  blessed_digest = model_blessing.get_string_custom_property(layout.BlessingKeys.SAVED_MODEL_DIGEST)
  wanted = export.postprocess_json(export.effective_postprocess(
      model.uri, json.loads(postprocess_overrides or "{}")))
  refusal = push_refusal(
      model.id, model_blessing.get_int_custom_property(layout.BlessingKeys.CURRENT_MODEL_ID), wanted,
      model_blessing.get_string_custom_property(layout.BlessingKeys.POSTPROCESS), blessed_digest,
      validate.saved_model_digest(source) if blessed_digest and source else "")
  if refusal:
    not_pushed(refusal)
    return

  workdir = tempfile.mkdtemp(prefix="retinanet-formats-")
  try:
    manifest, extras = _portable_formats(source, export_formats, workdir)
  except portable.ExportError as e:
    shutil.rmtree(workdir, ignore_errors=True)
    not_pushed(f"export formats: {e}")
    return

  try:
    version_dir = versioning.push_directory(
        source, serving_dir, validate=_prepush_check(model_blessing, validation_timeout_seconds),
        extras=extras)
  except validate.ValidationError as e:
    not_pushed(f"pre-push validation failed: {e}")
    pushed_model.set_string_custom_property(layout.PushKeys.VALIDATION, f"failed: {e}")
    return
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  if manifest:
    pushed_model.set_string_custom_property(layout.PushKeys.EXPORT_FORMATS, json.dumps(manifest, sort_keys=True))
    for fmt, entry in manifest.items():
      pushed_model.set_string_custom_property(layout.PushKeys.digest(fmt), entry["sha256"])
      logger.info("Pushed %s beside the SavedModel: %s (%s)", fmt, entry["file"], entry["check"])
  version = int(version_dir.rstrip("/").rsplit("/", 1)[-1])
  pushed_model.set_int_custom_property(layout.PushKeys.PUSHED, 1)
  pushed_model.set_string_custom_property(layout.PushKeys.DESTINATION, version_dir)
  pushed_model.set_int_custom_property(layout.PushKeys.VERSION, version)
  pushed_model.set_string_custom_property(layout.PushKeys.MODEL_URI, model.uri)
  pushed_model.set_string_custom_property(layout.PushKeys.SAVED_MODEL_DIGEST, blessed_digest)
  pushed_model.set_string_custom_property(layout.PushKeys.VALIDATION, "passed")
  logger.info("Pushed model version %d to %s (the evaluated SavedModel %s)", version,
              version_dir, source)


def _prepush_check(model_blessing, timeout_seconds: int):
  """check(staged_dir) for versioning.push_directory: raises ValidationError unless the staged
  copy passes pre-push validation (module docstring)."""
  from retinanet.serving import validate  # pylint: disable=g-import-not-at-top
  keys = layout.BlessingKeys
  blessed_digest = model_blessing.get_string_custom_property(keys.SAVED_MODEL_DIGEST)
  recorded = model_blessing.get_string_custom_property(keys.VALIDATION)
  validated = (bool(recorded) and
               model_blessing.get_string_custom_property(keys.VALIDATED_DIGEST) == blessed_digest)

  def check(staged_dir: str) -> None:
    if validated:  # the Evaluator's fresh-process validation of these very bytes
      staged_digest = validate.saved_model_digest(staged_dir)
      if staged_digest != blessed_digest:
        raise validate.ValidationError(f"the staged copy's digest {staged_digest[:12]} is not "
                                       f"the validated {blessed_digest[:12]}")
      report = json.loads(recorded)
    else:  # a blessing without it (an older Evaluator): validate the staged copy now
      report = validate.validate_in_fresh_process(staged_dir, timeout_seconds)
    if not report["valid"]:
      raise validate.ValidationError(report["error"])
    logger.info("Pre-push validation of %s passed: %s", report["export_dir"],
                report["valid_detections"])

  return check


def _portable_formats(source: str, formats_flag: str,
                      workdir: str) -> Tuple[Dict[str, Any], Dict[str, str]]:
  """(manifest, extras for push_directory) of the requested formats, written from the
  blessed model into workdir and verified against its SavedModel; ({}, {}) for none."""
  from retinanet.serving import portable, validate  # pylint: disable=g-import-not-at-top
  formats = portable.parse_formats(formats_flag)
  if not formats:
    return {}, {}
  manifest = portable.export_verified_formats(source, formats, workdir,
                                              validate.canned_images())
  extras = {}
  for fmt, entry in manifest.items():
    relative = os.path.join(layout.FORMATS_DIR, portable.FILENAMES[fmt])
    extras[relative] = entry.pop("path")
    entry["file"] = relative
  manifest_path = os.path.join(workdir, layout.FORMATS_MANIFEST_FILE)
  with open(manifest_path, "w") as f:
    json.dump(manifest, f, indent=2, sort_keys=True)
  extras[os.path.join(layout.FORMATS_DIR, layout.FORMATS_MANIFEST_FILE)] = manifest_path
  return manifest, extras
