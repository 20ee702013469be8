"""Compiles the pipeline into a Vertex AI PipelineSpec and optionally submits it.

Compilation is offline (KubeflowV2DagRunner writes JSON); submission needs
google-cloud-aiplatform, credentials and a container image built from the
repository's Dockerfile (`docker build -t <image> .`). Rerunning a stage on
Vertex is done by Vertex caching: unchanged steps (same inputs, parameters and
the code fingerprint of the component) are served from cache when `enable_caching` is on.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Optional

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


def schedule_request(spec_path: str, *, cron: str, display_name: str, pipeline_root: str,
                     service_account: Optional[str] = None) -> Dict[str, Any]:
  """The body of Vertex AI's `schedules.create` for a recurring run of a compiled pipeline
  (REST v1 Schedule: cron, one run at a time, the PipelineJob to create each time).
  Caching is off in every task: each run must look for the latest data span again, which a
  cached data step would not."""
  with open(spec_path) as f:
    compiled = json.load(f)  # KubeflowV2DagRunner writes a PipelineJob
  spec = compiled["pipelineSpec"]
  for task in spec["root"]["dag"]["tasks"].values():
    task.setdefault("cachingOptions", {})["enableCache"] = False
  runtime = dict(compiled.get("runtimeConfig", {}), gcsOutputDirectory=pipeline_root)
  job: Dict[str, Any] = {"displayName": display_name, "labels": compiled.get("labels", {}),
                         "pipelineSpec": spec, "runtimeConfig": runtime}
  if service_account:
    job["serviceAccount"] = service_account
  return {"displayName": display_name, "cron": cron, "maxConcurrentRunCount": "1",
          "createPipelineJobRequest": {"pipelineJob": job}}


def create_schedule(request: Dict[str, Any], *, project: str, region: str) -> str:
  """Creates the schedule `schedule_request` described; returns its resource name."""
  from google.cloud import aiplatform  # pylint: disable=g-import-not-at-top
  from google.cloud.aiplatform_v1.types import Schedule  # pylint: disable=g-import-not-at-top
  client = aiplatform.gapic.ScheduleServiceClient(
      client_options={"api_endpoint": f"{region}-aiplatform.googleapis.com"})
  parent = f"projects/{project}/locations/{region}"
  request["createPipelineJobRequest"]["parent"] = parent
  schedule = client.create_schedule(parent=parent, schedule=Schedule.from_json(
      json.dumps(request)))
  logger.info("Created the schedule %s (%s)", schedule.name, request["cron"])
  return schedule.name


def trainer_resources(accelerator_type: str, accelerator_count: int, cpu_limit: float = 0.0,
                      memory_limit_gb: float = 0.0):
  """The ResourceSpec the Trainer step requests on Vertex Pipelines (GPUs; pipeline
  steps cannot have TPUs: use a CustomJob, --vertex_training)."""
  from kfp.pipeline_spec import pipeline_spec_pb2  # pylint: disable=g-import-not-at-top
  from components.trainer import vertex_job  # pylint: disable=g-import-not-at-top
  if accelerator_type in vertex_job.TPU_TYPES:
    raise ValueError(f"{accelerator_type}: a Vertex pipeline step cannot have a TPU; add "
                     "--vertex_training to train in a CustomJob on a TPU VM")
  if accelerator_type and accelerator_type not in vertex_job.GPU_TYPES:
    raise ValueError(f"--train_accelerator_type={accelerator_type!r} is not one of "
                     f"{', '.join(vertex_job.GPU_TYPES + vertex_job.TPU_TYPES)}")
  if accelerator_type and accelerator_count < 1:
    raise ValueError("--train_accelerator_type needs --train_accelerator_count >= 1")
  spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec(
      cpu_limit=cpu_limit, memory_limit=memory_limit_gb)
  if accelerator_type:
    spec.accelerator.type = accelerator_type
    spec.accelerator.count = accelerator_count
  return spec


def _placeholder(artifact_class, uri: str, **properties):
  artifact = artifact_class()
  artifact.uri = uri
  for key, value in properties.items():
    setattr(artifact, key, value)
  return artifact


def dry_run_custom_job(trainer, spec, pipeline_root: str) -> Dict[str, Any]:
  """The CustomJob request the Trainer step would send, built by the code that sends it
  (vertex_job.custom_job_request), for placeholder artifacts under pipeline_root (on
  Vertex the URIs carry the execution's ids instead of <id>)."""
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  from components import artifacts  # pylint: disable=g-import-not-at-top
  from components.trainer import vertex_job  # pylint: disable=g-import-not-at-top
  root = pipeline_root.rstrip("/")
  inputs = {
      "examples": [_placeholder(standard_artifacts.Examples,
                                f"{root}/CocoExampleGen/examples/<id>",
                                split_names=json.dumps(["train", "val"]))],
      "label_map": [_placeholder(artifacts.LabelMap, f"{root}/CocoExampleGen/label_map/<id>")],
      "box_statistics": [_placeholder(artifacts.BoxStatistics,
                                      f"{root}/BoxStatisticsGen/statistics/<id>")],
  }
  outputs = {
      "model": [_placeholder(standard_artifacts.Model, f"{root}/{trainer.id}/model/<id>")],
      "model_run": [_placeholder(standard_artifacts.ModelRun,
                                 f"{root}/{trainer.id}/model_run/<id>")],
  }
  return vertex_job.custom_job_request(spec, inputs, outputs, dict(trainer.exec_properties),
                                       display_name=f"{trainer.id.lower()}-dry-run")
