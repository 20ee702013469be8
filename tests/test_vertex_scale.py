"""Golden checks of what would launch on Google Cloud, built offline.

The compiled PipelineSpec parses with KFP's proto and holds no path of this
machine; the Trainer step requests the asked accelerators, or carries the
CustomJob spec whose request (built by TFX's VertexJobClient, the code that
sends it) has the asked worker pools; Dataflow launched from Vertex runs in
the pipeline image with complete args.
"""
import json
import os
import re

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from components.trainer import vertex_job
from components.trainer.request import TrainerRequest
from pipeline import cli

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "us-docker.pkg.dev/proj/repo/retinanet-tfx:1"
BASE = ["--runner=vertex", "--gcs_root=gs://bucket/rn", "--dataset=coco2017",
        "--coco_dir=gs://bucket/coco", "--config=coco/retinanet-r50-640-1x-b64-8gpu",
        f"--vertex_image={IMAGE}", "--gcp_project=proj", "--gcp_region=europe-west4"]


def _strings(value):
  """Every string in a JSON value, JSON strings inside strings included."""
  if isinstance(value, dict):
    for k, v in value.items():
      yield k
      yield from _strings(v)
  elif isinstance(value, list):
    for v in value:
      yield from _strings(v)
  elif isinstance(value, str):
    yield value
    if value[:1] in "{[":
      try:
        yield from _strings(json.loads(value))
      except ValueError:
        pass


def _compile(tmp_path, extra):
  path = tmp_path / "spec.json"
  assert cli.main(BASE + [f"--vertex_spec={path}"] + extra) == 0
  job = json.loads(path.read_text())
  spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec(),
                               ignore_unknown_fields=False)
  return job, spec


def _trainer_executor(job):
  executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
  return next(v for k, v in executors.items() if "RetinaNetTrainer" in k)


def _trainer_parameters(job):
  component = job["pipelineSpec"]["root"]["dag"]["tasks"]["RetinaNetTrainer"]
  return {k: next(iter(v["runtimeValue"]["constantValue"].values()))
          for k, v in component["inputs"]["parameters"].items()}


def _assert_no_local_paths(job, tmp_path):
  local = [REPO_ROOT, str(tmp_path), os.path.expanduser("~")]
  pattern = re.compile(r"(^|[=\s\"'])/(work|home|tmp|root|Users|usr)/")
  for text in _strings(job):
    for path in local:
      assert path not in text, text[:300]
    assert not pattern.search(text), text[:300]
    assert "setup_file" not in text, text[:300]


def test_custom_job_with_4_gpus_x_2_workers_and_dataflow_from_vertex(tmp_path, capsys):
  job, spec = _compile(tmp_path, [
      "--vertex_training", "--train_machine_type=n1-highmem-16",
      "--train_accelerator_type=NVIDIA_TESLA_V100", "--train_accelerator_count=4",
      "--train_workers=2", "--dataflow", "--service_account=sa@proj.iam.gserviceaccount.com",
      "--network=projects/123/global/networks/vpc", "--subnetwork=regions/europe-west4/subnetworks/s",
      "--dry_run"])
  assert spec.pipeline_info.name == "retinanet"
  _assert_no_local_paths(job, tmp_path)
  params = _trainer_parameters(job)
  training = vertex_job.VertexJobSpec.from_json(params["vertex_job"])
  assert (training.accelerator_type, training.accelerator_count, training.worker_count,
          training.machine_type) == ("NVIDIA_TESLA_V100", 4, 2, "n1-highmem-16")
  assert params["strategy"] == "multi_worker_mirrored"
  # Dataflow: the pipeline image, complete args, no setup_file.
  beam = [a for a in _strings(job) if a.startswith("--")]
  for expected in ("--runner=DataflowRunner", "--project=proj", "--region=europe-west4",
                   "--temp_location=gs://bucket/rn/tmp", "--staging_location=gs://bucket/rn/staging",
                   f"--sdk_container_image={IMAGE}", "--experiments=use_runner_v2",
                   "--service_account_email=sa@proj.iam.gserviceaccount.com", "--network=vpc",
                   "--subnetwork=regions/europe-west4/subnetworks/s"):
    assert expected in beam, expected
  # The dry run prints the CustomJob request, field by field as asked.
  out = capsys.readouterr().out
  request = json.loads(out[out.index("CustomJob request of the Trainer:") + 34:])
  pools = request["job_spec"]["worker_pool_specs"]
  assert [p["replica_count"] for p in pools] == [1, 1]
  for pool in pools:
    assert pool["machine_spec"] == {"machine_type": "n1-highmem-16",
                                    "accelerator_type": "NVIDIA_TESLA_V100",
                                    "accelerator_count": 4}
    assert pool["container_spec"]["image_uri"] == IMAGE
    command = pool["container_spec"]["command"]
    assert command[:5] == ["python", "-m", "tfx.scripts.run_executor", "--executor_class_path",
                           vertex_job.WORKER_EXECUTOR]
    worker_properties = json.loads(command[command.index("--exec-properties") + 1])
    assert worker_properties["strategy"] == "multi_worker_mirrored"
    assert worker_properties["vertex_job"] == ""      # workers never launch jobs
    inputs = json.loads(command[command.index("--inputs") + 1])
    assert inputs["examples"][0]["artifact"]["uri"].startswith("gs://bucket/rn/pipeline_root/")
  assert request["job_spec"]["service_account"] == "sa@proj.iam.gserviceaccount.com"
  assert request["job_spec"]["network"] == "projects/123/global/networks/vpc"


def test_custom_job_with_one_gpu_and_with_a_tpu(tmp_path):
  one_gpu = vertex_job.VertexJobSpec(project="p", region="us-central1", image=IMAGE,
                                     accelerator_type="NVIDIA_TESLA_T4", accelerator_count=1)
  assert one_gpu.strategy == "default"
  assert vertex_job.worker_pool_specs(one_gpu) == [{
      "machine_spec": {"machine_type": "n1-standard-8", "accelerator_type": "NVIDIA_TESLA_T4",
                       "accelerator_count": 1},
      "replica_count": 1, "container_spec": {"image_uri": IMAGE},
      "disk_spec": {"boot_disk_type": "pd-ssd", "boot_disk_size_gb": 100}}]
  tpu = vertex_job.VertexJobSpec(project="p", region="us-central1", image=IMAGE,
                                 machine_type="cloud-tpu", accelerator_type="TPU_V3",
                                 accelerator_count=8)
  (pool,) = vertex_job.worker_pool_specs(tpu)
  assert pool["machine_spec"] == {"machine_type": "cloud-tpu", "accelerator_type": "TPU_V3",
                                  "accelerator_count": 8}
  properties = vertex_job.worker_exec_properties(tpu, {"strategy": "", "vertex_job": "x"})
  assert (properties["strategy"], properties["tpu"], properties["vertex_job"]) == (
      "tpu", "local", "")
  assert set(properties) == set(TrainerRequest().to_exec_properties())
  job, _ = _compile(tmp_path, ["--vertex_training", "--train_machine_type=cloud-tpu",
                               "--train_accelerator_type=TPU_V3", "--train_accelerator_count=8"])
  _assert_no_local_paths(job, tmp_path)
  assert _trainer_parameters(job)["strategy"] == "tpu"


@pytest.mark.parametrize("kwargs, message", [
    ({"accelerator_type": "TPU_V3", "accelerator_count": 8}, "machine_type=cloud-tpu"),
    ({"machine_type": "cloud-tpu", "accelerator_type": "TPU_V3", "accelerator_count": 8,
      "worker_count": 2}, "single hosts"),
    ({"accelerator_type": "NVIDIA_TESLA_V100", "accelerator_count": 3}, "1, 2, 4, 8"),
    ({"accelerator_type": "GTX_1080", "accelerator_count": 1}, "is not one of"),
    ({"accelerator_count": 2}, "without accelerator_type"),
    ({"worker_count": 0}, "worker_count"),
    ({"image": "gcr.io/YOUR_PROJECT/retinanet-tfx:latest"}, "pushed container image"),
])
def test_job_spec_rejects_what_vertex_would(kwargs, message):
  args = dict(project="p", region="r", image=IMAGE)
  args.update(kwargs)
  with pytest.raises(ValueError, match=message):
    vertex_job.VertexJobSpec(**args)


def test_trainer_step_requests_gpus_without_a_custom_job(tmp_path):
  job, spec = _compile(tmp_path, ["--train_accelerator_type=NVIDIA_L4",
                                  "--train_accelerator_count=2"])
  _assert_no_local_paths(job, tmp_path)
  resources = _trainer_executor(job)["container"]["resources"]
  assert resources["accelerator"] == {"type": "NVIDIA_L4", "count": "2"}
  assert _trainer_parameters(job)["strategy"] == "mirrored"
  assert _trainer_parameters(job)["vertex_job"] == ""
  # No other step asks for an accelerator.
  for name, executor in job["pipelineSpec"]["deploymentSpec"]["executors"].items():
    if "RetinaNetTrainer" not in name and "container" in executor:
      assert "accelerator" not in executor["container"].get("resources", {}), name


@pytest.mark.parametrize("extra, message", [
    (["--train_accelerator_type=TPU_V3", "--train_accelerator_count=8"], "cannot have a TPU"),
    (["--train_workers=2"], "needs --vertex_training"),
])
def test_impossible_hardware_requests_fail_clearly(tmp_path, capsys, extra, message):
  assert cli.main(BASE + [f"--vertex_spec={tmp_path}/s.json"] + extra) == 2
  assert message in capsys.readouterr().err


def test_wait_for_job_logs_states_and_raises_on_failure(caplog):
  class FakeClient:
    JOB_STATES_COMPLETED = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED")
    JOB_STATES_FAILED = ("JOB_STATE_FAILED",)

    def __init__(self, states):
      self.states = list(states)

    def get_job(self):
      return self.states.pop(0)

    def get_job_state(self, job):
      return job

    def get_job_name(self):
      return "projects/p/locations/us-central1/customJobs/42"

  caplog.set_level("INFO")
  naps = []
  assert vertex_job.wait_for_job(FakeClient(["JOB_STATE_PENDING", "JOB_STATE_RUNNING",
                                             "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"]),
                                 poll_seconds=5, sleep=naps.append) == "JOB_STATE_SUCCEEDED"
  assert naps == [5, 5, 5]
  logged = [r.getMessage() for r in caplog.records if "customJobs/42" in r.getMessage()]
  assert len(logged) == 3   # one line per state change
  with pytest.raises(RuntimeError, match="ended JOB_STATE_FAILED.*training/42/cpu\\?project=p"):
    vertex_job.wait_for_job(FakeClient(["JOB_STATE_FAILED"]), sleep=naps.append)
  assert vertex_job.console_link("projects/p/locations/r/customJobs/7") == (
      "https://console.cloud.google.com/vertex-ai/locations/r/training/7/cpu?project=p")
