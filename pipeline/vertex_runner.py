"""Compiles the pipeline into a Vertex AI PipelineSpec and optionally submits it.

Compilation is offline (KubeflowV2DagRunner writes JSON); submission needs
google-cloud-aiplatform, credentials and a container image built from the
repository's Dockerfile (`docker build -t <image> .`). Rerunning a stage on
Vertex is done by Vertex caching: unchanged steps (same inputs, parameters and
the code fingerprint of the component) are served from cache when `enable_caching` is on.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

from tfx import v1 as tfx

logger = logging.getLogger(__name__)


def compile_pipeline(pipeline: tfx.dsl.Pipeline, *, image: str, output_path: str) -> str:
  """Writes the PipelineSpec JSON for `pipeline` to `output_path`; returns the path."""
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
      output_dir=os.path.dirname(os.path.abspath(output_path)),
      output_filename=os.path.basename(output_path))
  runner.run(pipeline)
  logger.info("Compiled the Vertex pipeline spec to %s (image %s)", output_path, image)
  return output_path


def submit(spec_path: str, *, project: str, region: str, pipeline_root: str,
           display_name: str, enable_caching: bool = True,
           service_account: Optional[str] = None) -> str:
  """Submits a compiled spec to Vertex AI Pipelines; returns the job's resource name."""
  from google.cloud import aiplatform  # pylint: disable=g-import-not-at-top
  aiplatform.init(project=project, location=region)
  job = aiplatform.PipelineJob(
      display_name=display_name,
      template_path=spec_path,
      pipeline_root=pipeline_root,
      enable_caching=enable_caching)
  job.submit(service_account=service_account)
  logger.info("Submitted %s: %s", display_name, job.resource_name)
  return job.resource_name
