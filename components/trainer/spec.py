"""ComponentSpec of the Trainer: its inputs, outputs and parameters (one per TrainerRequest
field)."""
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec

from components.artifacts import BoxStatistics, LabelMap
from components.trainer.request import TrainerRequest


class TrainerSpec(ComponentSpec):
  """Examples (one artifact, or a window of spans) + label map + request in; a trained model
  and its run logs out."""
  PARAMETERS = TrainerRequest.spec_parameters()
  INPUTS = {
      "examples": ChannelParameter(type=standard_artifacts.Examples),
      "label_map": ChannelParameter(type=LabelMap),
      # A trained or pushed model to fine-tune from (class head re-initialized
      # when its class count differs).
      "base_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
      # BoxStatisticsGen's report: anchor coverage, acted on per config.anchor_fit.
      "box_statistics": ChannelParameter(type=BoxStatistics, optional=True),
      # DataValidator's anomalies: training is refused when they block (executor.py).
      "anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies, optional=True),
  }
  OUTPUTS = {
      "model": ChannelParameter(type=standard_artifacts.Model),
      "model_run": ChannelParameter(type=standard_artifacts.ModelRun),
  }
