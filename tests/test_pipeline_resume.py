"""Production reruns (e2e): resume after SIGKILL, precise partial runs, per-run summaries.

The pipeline runs as a real subprocess (`run_pipeline.py`), is killed with
SIGKILL while the Trainer is training, and the same command is run again: it
must resume from the killed training's last checkpoint and complete. A changed
learning rate must start at step 0, with the data and its statistics from the cache.
"""
import glob
import logging
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from data import sample_data
from pipeline import cli, metadata_queries
from retinanet.training import checkpointing

pytestmark = pytest.mark.e2e

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL_STEPS = 60
SMALL = ["--set", "model.input_size=[128, 128]", "--set", f"train.total_steps={TOTAL_STEPS}",
         "--set", "train.steps_per_execution=5", "--set", "train.checkpoint_every=10",
         "--set", "train.log_every=5", "--set", "train.global_batch_size=4",
         "--set", "optimizer.warmup_steps=5", "--set", "optimizer.boundaries=[40, 50]",
         "--set", "eval.batch_size=4", "--direct_mode=in_memory", "--min_ap=0"]


@pytest.fixture(scope="module")
def dataset_flags(tmp_path_factory):
  data = sample_data.generate_sample_dataset(str(tmp_path_factory.mktemp("data")), num_train=16,
                                             num_val=4, image_size=(128, 128), seed=3)
  return ["--dataset=custom", f"--train_annotations={data.annotation_files['train']}",
          f"--train_images={data.image_dirs['train']}",
          f"--val_annotations={data.annotation_files['val']}",
          f"--val_images={data.image_dirs['val']}"]


def _argv(output_dir, dataset_flags, *extra):
  """run_pipeline.py's arguments for a run of SMALL into output_dir."""
  return ["--runner=local", f"--output_dir={output_dir}", *dataset_flags, *SMALL, *extra]


def _command(output_dir, dataset_flags, *extra):
  return [sys.executable, os.path.join(REPO, "run_pipeline.py"),
          *_argv(output_dir, dataset_flags, *extra)]


def _env():
  """The environment of a user's shell: no warning filters of the test runner's own."""
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
  for name in ("PYTHONWARNINGS", "TF_CPP_MIN_LOG_LEVEL"):
    env.pop(name, None)
  return env


# Library noise the console must not show (retinanet/console.py), checked on a whole run.
CONSOLE_NOISE = ("Unable to register cuDNN factory", "Unable to register cuBLAS factory",
                 "TF-TRT Warning", "non-supported Python version", "FutureWarning",
                 "ArtifactQuery.property_predicate is not supported", "base run context",
                 "Tensorflow Transform is running in tf.compat.v1 mode",
                 "Issue encountered when serializing", "build_tensor_info")


def _checkpoint_steps(resume_root):
  """Steps of the workspace's complete checkpoints. A SIGKILL can land while a checkpoint
  is half written (its index there, its data not yet): the resume must then take the
  previous one (checkpointing.latest_complete_checkpoint), so that is what counts."""
  paths = glob.glob(os.path.join(resume_root, "*", "checkpoint", "ckpt-*.index"))
  return sorted(int(re.search(r"ckpt-(\d+)\.index$", p).group(1)) for p in paths
                if checkpointing.is_complete(p[:-len(".index")]))


def test_sigkilled_training_resumes_and_a_changed_config_starts_fresh(tmp_path, dataset_flags,
                                                                     capsys, caplog):
  output_dir = str(tmp_path / "run")
  command = _command(output_dir, dataset_flags)
  resume_root = os.path.join(output_dir, "pipeline_root", "RetinaNetTrainer", "resume")
  with open(tmp_path / "killed.log", "w") as log:
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_env(),
                               cwd=REPO)
    deadline = time.time() + 900
    while time.time() < deadline and process.poll() is None:
      if [s for s in _checkpoint_steps(resume_root) if s >= 20]:
        break
      time.sleep(0.5)
    assert process.poll() is None, open(tmp_path / "killed.log").read()[-3000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
  killed_at = max(_checkpoint_steps(resume_root))
  assert 20 <= killed_at < TOTAL_STEPS
  killed_log = open(tmp_path / "killed.log").read()  # every stage up to the trainer ran
  assert "Dataset statistics: anchor coverage" in killed_log
  assert [noise for noise in CONSOLE_NOISE if noise in killed_log] == []

  rerun = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=REPO)
  log = rerun.stdout + rerun.stderr
  assert rerun.returncode == 0, log[-3000:]
  assert "Resuming the unfinished training" in log
  assert re.search(rf"Restored checkpoint \S+ckpt-{killed_at} at step {killed_at}", log), log
  assert f"[global_step {TOTAL_STEPS}/{TOTAL_STEPS}]" in log
  assert "Blessed: yes" in log and "Pushed model:" in log
  assert [noise for noise in CONSOLE_NOISE if noise in log] == []
  store = metadata_queries.open_store(os.path.join(output_dir, "metadata.sqlite"))
  [model] = store.get_artifacts_by_type("Model")
  props = metadata_queries.custom_properties(model)
  assert props["final_step"] == TOTAL_STEPS
  assert props["resumed_from"].endswith(f"ckpt-{killed_at}")
  assert os.listdir(resume_root) == []          # the finished training's workspace is gone
  assert os.path.exists(os.path.join(model.uri, "Format-Serving", "saved_model.pb"))

  # A changed learning rate, in this process (no property here needs a fresh one): the
  # Trainer starts fresh; the data and its statistics (which do not depend on the
  # optimizer) come from the cache.
  with caplog.at_level(logging.INFO):
    assert cli.main(_argv(output_dir, dataset_flags, "--set",
                          "optimizer.base_learning_rate=0.02", "--to_stage=trainer")) == 0
  printed = capsys.readouterr().out
  assert "CocoExampleGen       cached" in printed and "BoxStatisticsGen     cached" in printed
  assert "RetinaNetTrainer     ran" in printed
  log = caplog.text
  assert "from scratch" in log and "Starting training from step 0" in log
  assert "Resuming" not in log


def test_partial_run_without_upstream_outputs_fails_clearly_and_summaries_are_per_run(
    tmp_path, dataset_flags, capsys):
  output_dir = str(tmp_path / "run")
  argv = _argv(output_dir, dataset_flags)
  assert cli.main(argv + ["--to_stage=data"]) == 0
  printed = capsys.readouterr().out
  assert "CocoExampleGen       ran" in printed
  assert "RetinaNetTrainer     not run in this run" in printed
  assert "COCO AP" not in printed and "No model was evaluated or pushed in this run." in printed
  # The evaluator needs a trained model that no run has produced: a clear error, no work.
  assert cli.main(argv + ["--from_stage=evaluator"]) == 2
  error = capsys.readouterr().err
  assert "--from_stage=evaluator needs the outputs of CocoExampleGen and RetinaNetTrainer" in error
  assert "never completed: RetinaNetTrainer" in error and "--to_stage=trainer" in error
  store = metadata_queries.open_store(os.path.join(output_dir, "metadata.sqlite"))
  assert len(store.get_contexts_by_type("pipeline_run")) == 1     # nothing ran
