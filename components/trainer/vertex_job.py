"""The Trainer's training as a Vertex AI CustomJob: worker pools from flags, TFX's client.

The way TFX's own `google_cloud_ai_platform` Trainer extension does it: the
CustomJob request is built by TFX's `VertexJobClient.create_training_job`
(every worker pool's container runs `python -m tfx.scripts.run_executor` with
the serialized artifacts), here with our image and our `WorkerExecutor` as
the executor, so each worker runs our training entry point; Vertex sets
TF_CONFIG (multi-worker) or the workers find the TPU locally (TPU VM). The
launching Executor waits for the job, logs every state change, and records
the job name and console link in MLMD.

  VertexJobSpec(project, region, image, machine_type="n1-standard-8",
                accelerator_type="NVIDIA_TESLA_V100", accelerator_count=4, worker_count=2)

`custom_job_request(...)` builds the exact request `run` sends (the --dry_run
of run_pipeline.py prints it); it needs no credentials.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any, Callable, Dict, List, Optional

from components.trainer.request import TrainerRequest

logger = logging.getLogger(__name__)

WORKER_EXECUTOR = "components.trainer.executor.WorkerExecutor"
TPU_MACHINE_TYPE = "cloud-tpu"
TPU_TYPES = ("TPU_V2", "TPU_V3")
GPU_TYPES = ("NVIDIA_TESLA_T4", "NVIDIA_TESLA_V100", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_A100",
             "NVIDIA_A100_80GB", "NVIDIA_L4", "NVIDIA_H100_80GB")
POLL_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class VertexJobSpec:
  """Where and on what the training job runs (validated on construction)."""
  project: str
  region: str
  image: str
  machine_type: str = "n1-standard-8"
  accelerator_type: str = ""      # one of GPU_TYPES or TPU_TYPES; "" = CPU only
  accelerator_count: int = 0
  worker_count: int = 1           # machines, the chief included (GPU / CPU only)
  service_account: str = ""
  network: str = ""               # projects/<number>/global/networks/<name>, for VPC peering
  boot_disk_gb: int = 100

  def __post_init__(self):
    problems = []
    if not self.project or not self.region or not self.image:
      problems.append("project, region and image are required")
    if self.image.startswith(("/", ".")) or "YOUR_PROJECT" in self.image:
      problems.append(f"image {self.image!r} must be a pushed container image "
                      "(e.g. us-docker.pkg.dev/PROJECT/REPO/retinanet-tfx:TAG)")
    if self.worker_count < 1:
      problems.append("worker_count must be >= 1")
    if self.is_tpu:
      if self.machine_type != TPU_MACHINE_TYPE:
        problems.append(f"a TPU ({self.accelerator_type}) needs machine_type={TPU_MACHINE_TYPE}")
      if self.accelerator_count != 8 or self.worker_count != 1:
        problems.append("Vertex TPU VMs are single hosts with 8 cores: accelerator_count=8, "
                        "worker_count=1 (pods: see README 'Running at scale')")
    elif self.accelerator_type:
      if self.accelerator_type not in GPU_TYPES:
        problems.append(f"accelerator_type {self.accelerator_type!r} is not one of "
                        f"{', '.join(GPU_TYPES + TPU_TYPES)}")
      if self.accelerator_count not in (1, 2, 4, 8, 16):
        problems.append(f"accelerator_count={self.accelerator_count}: GPUs come in 1, 2, 4, 8 "
                        "or 16 per machine")
    elif self.accelerator_count:
      problems.append("accelerator_count without accelerator_type")
    if problems:
      raise ValueError("Vertex training: " + "; ".join(problems))

  @property
  def is_tpu(self) -> bool:
    return self.accelerator_type in TPU_TYPES

  @property
  def strategy(self) -> str:
    """The tf.distribute strategy every worker uses."""
    if self.is_tpu:
      return "tpu"
    if self.worker_count > 1:
      return "multi_worker_mirrored"
    return "mirrored" if self.accelerator_count > 1 else "default"

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> "VertexJobSpec":
    return cls(**json.loads(text))


def worker_pool_specs(spec: VertexJobSpec) -> List[Dict[str, Any]]:
  """Vertex worker pools: pool 0 is the chief, pool 1 the other workers (if any)."""
  machine = {"machine_type": spec.machine_type}
  if spec.accelerator_type:
    machine.update(accelerator_type=spec.accelerator_type,
                   accelerator_count=spec.accelerator_count)

  def pool(replicas: int) -> Dict[str, Any]:
    return {"machine_spec": dict(machine), "replica_count": replicas,
            "container_spec": {"image_uri": spec.image},
            "disk_spec": {"boot_disk_type": "pd-ssd", "boot_disk_size_gb": spec.boot_disk_gb}}

  pools = [pool(1)]
  if spec.worker_count > 1:
    pools.append(pool(spec.worker_count - 1))
  return pools


def worker_exec_properties(spec: VertexJobSpec, exec_properties: Dict[str, Any]
                           ) -> Dict[str, Any]:
  """What each worker's executor gets: the Trainer's request with the job's strategy and
  no nested job (on a TPU VM, the TPU is the worker's own)."""
  request = TrainerRequest.from_exec_properties(exec_properties)
  request = dataclasses.replace(request, vertex_job="", strategy=spec.strategy,
                                tpu="local" if spec.is_tpu else request.tpu)
  return request.to_exec_properties()


def _job_client_class():
  from tfx.extensions.google_cloud_ai_platform import training_clients  # pylint: disable=g-import-not-at-top

  class OfflineVertexJobClient(training_clients.VertexJobClient):
    """TFX's client without the API connection: only builds requests."""

    def create_client(self) -> None:
      self._client = None

  return training_clients.VertexJobClient, OfflineVertexJobClient


def custom_job_request(spec: VertexJobSpec, input_dict, output_dict,
                       exec_properties: Dict[str, Any],
                       display_name: Optional[str] = None) -> Dict[str, Any]:
  """The CustomJob request, built by TFX's VertexJobClient.create_training_job."""
  _, offline = _job_client_class()
  job_spec: Dict[str, Any] = {"worker_pool_specs": worker_pool_specs(spec)}
  if spec.service_account:
    job_spec["service_account"] = spec.service_account
  if spec.network:
    job_spec["network"] = spec.network
  job_args = {"job_spec": job_spec}
  if display_name:
    job_args["display_name"] = display_name
  return offline(spec.region).create_training_job(
      input_dict, output_dict, worker_exec_properties(spec, exec_properties), WORKER_EXECUTOR,
      job_args, None, None)


def console_link(job_name: str) -> str:
  """Cloud console URL of projects/P/locations/R/customJobs/ID."""
  parts = job_name.split("/")
  if len(parts) != 6:
    return ""
  project, region, job_id = parts[1], parts[3], parts[5]
  return (f"https://console.cloud.google.com/vertex-ai/locations/{region}/training/{job_id}"
          f"/cpu?project={project}")


def wait_for_job(client, poll_seconds: float = POLL_SECONDS,
                 sleep: Callable[[float], None] = time.sleep) -> str:
  """Polls a launched job until it ends, logging each state change; returns the final
  state name, raises RuntimeError when it failed or was cancelled."""
  last = None
  while True:
    job = client.get_job()
    state = client.get_job_state(job)
    name = getattr(state, "name", str(state))
    if name != last:
      logger.info("Vertex training job %s: %s", client.get_job_name(), name)
      last = name
    if state in client.JOB_STATES_COMPLETED:
      break
    sleep(poll_seconds)
  if state in client.JOB_STATES_FAILED:
    error = getattr(job, "error", None)
    raise RuntimeError(f"Vertex training job {client.get_job_name()} ended {name}: {error} "
                       f"({console_link(client.get_job_name())})")
  return name


def run(spec: VertexJobSpec, input_dict, output_dict, exec_properties: Dict[str, Any],
        client=None, poll_seconds: float = POLL_SECONDS) -> str:
  """Launches the training job, waits for it; returns the job's resource name."""
  request = custom_job_request(spec, input_dict, output_dict, exec_properties)
  if client is None:
    online, _ = _job_client_class()
    client = online(spec.region)
  client.launch_job(spec.project, request)
  logger.info("Launched Vertex training job %s (%d worker(s), %s x%d, %s): %s",
              client.get_job_name(), spec.worker_count, spec.accelerator_type or "CPU",
              spec.accelerator_count, spec.machine_type, console_link(client.get_job_name()))
  wait_for_job(client, poll_seconds)
  return client.get_job_name()
