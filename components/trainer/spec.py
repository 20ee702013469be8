"""ComponentSpec of the Trainer: its inputs, outputs and parameters."""
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.artifacts import BoxStatistics, LabelMap


class TrainerSpec(ComponentSpec):
  """Examples + label map + config in; a trained model and its run logs out."""
  PARAMETERS = {
      # The full ExperimentConfig as JSON (validated again by the executor).
      "config_json": ExecutionParameter(type=str),
      # tf.distribute strategy name; overrides config.train.strategy when set.
      "strategy": ExecutionParameter(type=str, optional=True),
      # TPU address/zone/project for strategy="tpu".
      "tpu": ExecutionParameter(type=str, optional=True),
      "tpu_zone": ExecutionParameter(type=str, optional=True),
      "gcp_project": ExecutionParameter(type=str, optional=True),
      # Variable-name regexes to freeze (fine-tuning), JSON list.
      "freeze_patterns": ExecutionParameter(type=str, optional=True),
      "code_version": ExecutionParameter(type=str, optional=True),
      # Root of the resume workspaces (executor docstring); "" = train in the output URI.
      "resume_dir": ExecutionParameter(type=str, optional=True),
      # Workspaces of unfinished trainings (other configs or data) kept for a later resume.
      "keep_unfinished_trainings": ExecutionParameter(type=int, optional=True),
      # VertexJobSpec JSON (vertex_job.py): run the training as a Vertex CustomJob.
      "vertex_job": ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {
      "examples": ChannelParameter(type=standard_artifacts.Examples),
      "label_map": ChannelParameter(type=LabelMap),
      # A trained or pushed model to fine-tune from (class head re-initialized
      # when its class count differs).
      "base_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
      # BoxStatisticsGen's report: anchor coverage, acted on per config.anchor_fit.
      "box_statistics": ChannelParameter(type=BoxStatistics, optional=True),
  }
  OUTPUTS = {
      "model": ChannelParameter(type=standard_artifacts.Model),
      "model_run": ChannelParameter(type=standard_artifacts.ModelRun),
  }
