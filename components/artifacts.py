"""Custom artifact types of the pipeline.

Vertex's compiler needs TYPE_NAME to equal the importable class path
(`package.ClassName`, see shared TFX notes) and no PROPERTIES: values go in
custom properties instead. Both classes are re-exported by `components`.
"""
from tfx.types.artifact import Artifact


class LabelMap(Artifact):
  """`label_map.json`: contiguous class index <-> original category id and name."""
  TYPE_NAME = "components.LabelMap"


class DatasetStatistics(Artifact):
  """`statistics.json`: per-split counts that reconcile (read = written + skipped)."""
  TYPE_NAME = "components.DatasetStatistics"


LABEL_MAP_FILE = "label_map.json"
STATISTICS_FILE = "statistics.json"

# Layout of a Model artifact written by the Trainer (and of a pushed model):
# <uri>/checkpoint/  the tf.train checkpoints, <uri>/config.json, <uri>/label_map.json.
MODEL_CHECKPOINT_DIR = "checkpoint"
MODEL_CONFIG_FILE = "config.json"
MODEL_LABEL_MAP_FILE = "label_map.json"
# A ModelRun holds the TensorBoard logs under <uri>/tensorboard/.
MODEL_RUN_TENSORBOARD_DIR = "tensorboard"
