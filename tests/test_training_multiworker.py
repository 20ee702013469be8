"""Multi-worker training for real: two worker processes over loopback ports.

The workers run exactly the container command of the Vertex CustomJob request
(components/trainer/vertex_job.py builds it with TFX's VertexJobClient):
`python -m tfx.scripts.run_executor --executor_class_path
components.trainer.executor.WorkerExecutor ...`, with the TF_CONFIG Vertex
would set (a chief pool and a worker pool). Checked against one worker
running the same command without TF_CONFIG, on the same global batch:

  * the same losses at every step (each worker reads every other record of
    the one TFRecord file, so the union of the two per-worker batches is the
    single worker's batch; augmentation off, batch norm frozen);
  * a second launch with more steps resumes from the chief's checkpoint, and
    only the chief writes into the shared workspace.
"""
import glob
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
from tfx.types import standard_artifacts

from components import LabelMap
from components.trainer import executor, vertex_job
from retinanet import coco
from retinanet import config as config_lib
from retinanet import layout
from tests.test_training_fixtures import tiny_config, write_sample_records

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "us-docker.pkg.dev/project/repo/retinanet-tfx:test"
SPEC = vertex_job.VertexJobSpec(project="project", region="us-central1", image=IMAGE,
                                machine_type="n1-standard-4", worker_count=2)
LOSS_KEYS = ("class_loss", "box_loss", "total_loss", "num_positives", "gradient_norm")


def _config(total_steps):
  return tiny_config([
      "input.shuffle_buffer=1", "input.scale_min=1.0", "input.scale_max=1.0",
      "input.horizontal_flip=false", "model.backbone.freeze_batch_norm=true",
      "optimizer.warmup_steps=0", "train.eval_every=0"],
      total_steps=total_steps, steps_per_execution=1, log_every=1, checkpoint_every=2)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  """(examples, label_map) artifacts: 16 sample images in ONE TFRecord file."""
  root = tmp_path_factory.mktemp("multiworker")
  pattern = write_sample_records(str(root / "records"), num_images=16, num_shards=1)
  examples = standard_artifacts.Examples()
  examples.uri = str(root / "examples")
  examples.split_names = json.dumps(["train", "val"])
  os.makedirs(os.path.join(examples.uri, "Split-train"))
  for path in glob.glob(pattern):
    shutil.copy(path, os.path.join(examples.uri, "Split-train"))
  with open(glob.glob(str(root / "records" / "raw" / "annotations" / "*train*.json"))[0]) as f:
    categories = json.load(f)["categories"]
  label_map = LabelMap()
  label_map.uri = str(root / "label_map")
  os.makedirs(label_map.uri)
  coco.save_label_map(coco.LabelMap.from_categories(categories),
                      os.path.join(label_map.uri, "label_map.json"))
  return examples, label_map


def _command(inputs, model_uri, total_steps):
  """The worker command of the CustomJob request for a model output at model_uri."""
  examples, label_map = inputs
  model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
  model.uri, model_run.uri = model_uri, model_uri + "_run"
  exec_properties = {"config_json": config_lib.config_to_json(_config(total_steps)),
                     "freeze_patterns": "[]", "code_version": "", "resume_dir": "",
                     "strategy": "", "vertex_job": SPEC.to_json()}
  request = vertex_job.custom_job_request(
      SPEC, {"examples": [examples], "label_map": [label_map]},
      {"model": [model], "model_run": [model_run]}, exec_properties)
  commands = [p["container_spec"]["command"] for p in request["job_spec"]["worker_pool_specs"]]
  assert commands[0] == commands[1]   # chief and workers run the same entry point
  assert commands[0][:3] == ["python", "-m", "tfx.scripts.run_executor"]
  return [sys.executable] + commands[0][1:]


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _launch(command, tf_configs, log_dir):
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  procs = []
  os.makedirs(log_dir, exist_ok=True)
  for i, tf_config in enumerate(tf_configs):
    worker_env = dict(env)
    worker_env.pop("TF_CONFIG", None)
    if tf_config is not None:
      worker_env["TF_CONFIG"] = json.dumps(tf_config)
    log = open(os.path.join(log_dir, f"worker{i}.log"), "w")
    procs.append((subprocess.Popen(command, cwd=REPO_ROOT, env=worker_env, stdout=log,
                                   stderr=subprocess.STDOUT), log))
  for proc, log in procs:
    code = proc.wait(timeout=900)
    log.close()
    if code != 0:
      with open(log.name) as f:
        raise AssertionError(f"{log.name} exited {code}:\n{f.read()[-4000:]}")
  return [open(log.name).read() for _, log in procs]


def _one_worker_in_process(inputs, model_uri, total_steps):
  """The same worker command's executor and properties, run in this process without
  TF_CONFIG: the single-worker reference (a fresh process adds only start-up time)."""
  command = _command(inputs, model_uri, total_steps)
  properties = json.loads(command[command.index("--exec-properties") + 1])
  examples, label_map = inputs
  model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
  model.uri, model_run.uri = model_uri, model_uri + "_run"
  executor.WorkerExecutor().Do({"examples": [examples], "label_map": [label_map]},
                               {"model": [model], "model_run": [model_run]}, properties)


def _two_workers(command, log_dir):
  chief, worker = _free_ports(2)
  cluster = {"chief": [f"localhost:{chief}"], "worker": [f"localhost:{worker}"]}
  return _launch(command, [{"cluster": cluster, "task": {"type": "chief", "index": 0}},
                           {"cluster": cluster, "task": {"type": "worker", "index": 0}}],
                 log_dir)


def _history(model_uri):
  return executor.read_result(os.path.join(model_uri, "training"))["history"]


def test_two_workers_equal_one_worker_and_resume_from_the_chief(inputs, tmp_path):
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  # First launch: 2 steps, a checkpoint at step 2.
  _one_worker_in_process(inputs, one, 2)
  logs = _two_workers(_command(inputs, two, 2), str(tmp_path / "logs2"))
  assert "2 replicas" in logs[0] or "with 2 replicas" in "".join(logs)
  first_one, first_two = _history(one), _history(two)
  # Second launch with total_steps 4: both resume from their step-2 checkpoint.
  _one_worker_in_process(inputs, one, 4)
  logs = _two_workers(_command(inputs, two, 4), str(tmp_path / "logs4"))
  assert all("at step 2" in log for log in logs), "every worker restores the chief's step 2"
  second_one, second_two = _history(one), _history(two)

  for reference, distributed in ((first_one, first_two), (second_one, second_two)):
    assert [s for s, _ in reference] == [s for s, _ in distributed]
    for (_, a), (_, b) in zip(reference, distributed):
      for key in LOSS_KEYS:
        assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
  assert [s for s, _ in first_two] == [1, 2] and [s for s, _ in second_two] == [3, 4]
  # Only the chief wrote checkpoints, and only into the workspace's checkpoint dir.
  workspace = os.path.join(two, "training")
  written = sorted(os.path.relpath(os.path.join(root, name), workspace)
                   for root, _, names in os.walk(workspace) for name in names)
  assert all(path.startswith("checkpoint/") or path == layout.TRAINING_RESULT_FILE
             for path in written), written
  assert any(path.startswith("checkpoint/ckpt-4") for path in written), written


def test_executor_with_a_vertex_job_waits_for_it_then_exports(inputs, tmp_path, monkeypatch):
  """The Trainer's Executor with `vertex_job`: launches (here: the chief's command run
  in-process by a fake `vertex_job.run`), reads the chief's result, exports the model and
  records the job in MLMD."""
  examples, label_map = inputs
  spec = vertex_job.VertexJobSpec(project="p", region="us-central1", image=IMAGE)
  model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
  model.uri, model_run.uri = str(tmp_path / "model"), str(tmp_path / "model_run")
  input_dict = {"examples": [examples], "label_map": [label_map]}
  output_dict = {"model": [model], "model_run": [model_run]}
  exec_properties = {"config_json": config_lib.config_to_json(_config(2)),
                     "freeze_patterns": "[]", "code_version": "", "resume_dir": "",
                     "strategy": spec.strategy, "vertex_job": spec.to_json()}

  def fake_run(job_spec, inputs_, outputs_, properties, client=None, poll_seconds=0):
    assert job_spec == spec
    request = vertex_job.custom_job_request(job_spec, inputs_, outputs_, properties)
    command = request["job_spec"]["worker_pool_specs"][0]["container_spec"]["command"]
    worker_properties = json.loads(command[command.index("--exec-properties") + 1])
    executor.WorkerExecutor().Do(inputs_, outputs_, worker_properties)
    return "projects/p/locations/us-central1/customJobs/99"

  monkeypatch.setattr(vertex_job, "run", fake_run)
  executor.Executor().Do(input_dict, output_dict, exec_properties)
  assert model.get_string_custom_property("vertex_job_name").endswith("customJobs/99")
  assert model.get_string_custom_property("vertex_job_console").endswith("training/99/cpu?project=p")
  assert model.get_int_custom_property("final_step") == 2
  assert os.path.exists(os.path.join(model.uri, "Format-Serving", "saved_model.pb"))
  assert not os.path.exists(os.path.join(model.uri, "training"))   # the workspace is gone
