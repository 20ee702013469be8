"""RetinaNetPusher: export a blessed model and push it to a versioned serving dir."""

import json
import logging
import os

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

logger = logging.getLogger(__name__)


@component
def RetinaNetPusher(  # pylint: disable=invalid-name
    model: InputArtifact[standard_artifacts.Model],
    model_blessing: InputArtifact[standard_artifacts.ModelBlessing],
    pushed_model: OutputArtifact[standard_artifacts.PushedModel],
    serving_dir: Parameter[str],
    postprocess_overrides: Parameter[str] = "{}",
    code_version: Parameter[str] = "",
) -> None:
  """Exports `model` as a saved_model and pushes it to `<serving_dir>/<version>/`.

  Does nothing but record why (custom property `reason`) when the blessing
  says the model is not blessed.
  """
  del code_version
  from retinanet.serving import export, versioning  # pylint: disable=g-import-not-at-top

  if model_blessing.get_int_custom_property("blessed") != 1:
    reason = model_blessing.get_string_custom_property("reason") or "model not blessed"
    logger.info("Not pushing %s: %s", model.uri, reason)
    pushed_model.set_int_custom_property("pushed", 0)
    pushed_model.set_string_custom_property("reason", f"not blessed: {reason}")
    return

  overrides = json.loads(postprocess_overrides or "{}")
  export_dir = os.path.join(pushed_model.uri, "export")
  export.export_model_dir(model.uri, export_dir, postprocess_overrides=overrides)
  version_dir = versioning.push_directory(export_dir, serving_dir)
  version = int(os.path.basename(version_dir))
  pushed_model.set_int_custom_property("pushed", 1)
  pushed_model.set_string_custom_property("pushed_destination", version_dir)
  pushed_model.set_int_custom_property("pushed_version", version)
  pushed_model.set_string_custom_property("model_uri", model.uri)
  logger.info("Pushed model version %d to %s", version, version_dir)
