"""run_pipeline.py's command line: help, configs, argument errors, Vertex/Dataflow compile."""
import json
import os
import subprocess
import sys

import pytest

from pipeline import beam_options, cli


def test_help_explains_every_flag(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["--help"])
  assert exit_info.value.code == 0
  text = capsys.readouterr().out
  parser = cli.build_parser()
  for action in parser._actions:  # pylint: disable=protected-access
    for flag in action.option_strings:
      assert flag in text
    assert action.help, f"{action.option_strings} has no help text"
  assert "examples:" in text and "--runner=vertex" in text


def test_list_configs(capsys):
  assert cli.main(["--list_configs"]) == 0
  names = capsys.readouterr().out.split()
  assert "sample/tiny" in names
  assert "coco/retinanet-r50-640-1x-b64-8gpu" in names


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("argv, code, message", [
    (["--list_configs"], 0, "sample/tiny"),
    (["--set", "model.nope=1"], 2, "unknown config key model.nope"),
    (["--config", "sample/tiyn"], 2, "did you mean sample/tiny"),
    (["--set", "optimizer.warmup_steps=100000"], 2, "must be <= train.total_steps"),
    (["--dataset=spans", "--span_pattern=drops/span-{SPAN}", "--accept_anomaly=empty_span"], 2,
     "--accept_anomaly empty_span: not an anomaly that can be accepted"),
])
def test_answers_and_config_mistakes_come_before_tensorflow_loads(argv, code, message):
  """The CLI as run_pipeline.py runs it, in a fresh interpreter: the answer or the error,
  and TensorFlow never imported (so these take about a second, not the ~15 s of its import)."""
  probe = ("import sys; from pipeline import cli; code = cli.main(sys.argv[1:]); "
           "print('EXIT', code, 'tensorflow' in sys.modules)")
  proc = subprocess.run([sys.executable, "-c", probe, *argv], cwd=ROOT, capture_output=True,
                        text=True, timeout=120)
  assert f"EXIT {code} False" in proc.stdout, proc.stdout + proc.stderr
  assert message in proc.stdout + proc.stderr


@pytest.mark.parametrize("argv, message", [
    (["--dataset=custom", "--train_annotations=a.json"], "--dataset=custom needs --train_images"),
    (["--dataset=coco2017"], "--dataset=coco2017 needs --coco_dir"),
    (["--dataset=coco2017", "--coco_dir=/nonexistent"], "prepare it with: python -m data.download_coco"),
    (["--set", "train.totl_steps=3"], "unknown config key train.totl_steps"),
    # A quick try of two steps names the coupled setting to add, as a --set.
    (["--set", "train.total_steps=2"], "--set optimizer.warmup_steps=2"),
    (["--postprocess", "nms_mode=soft"], "postprocess.nms_mode='soft'"),
    (["--config=nope/none"], "nope/none"),
    (["--finetune_from=/nonexistent/model"], "--finetune_from=/nonexistent/model does not exist"),
    (["--runner=vertex"], "--runner=vertex needs --gcs_root"),
])
def test_bad_arguments_give_clear_errors(argv, message, tmp_path, capsys):
  assert cli.main(argv + [f"--output_dir={tmp_path}"]) == 2
  assert message in capsys.readouterr().err


def test_vertex_compile_with_dataflow_through_the_cli(tmp_path, capsys):
  spec = tmp_path / "spec.json"
  argv = ["--runner=vertex", "--gcs_root=gs://bucket/rn", "--dataset=coco2017",
          "--coco_dir=gs://bucket/coco", "--config=coco/retinanet-r50-640-1x-b64-8gpu",
          "--vertex_image=gcr.io/p/retinanet-tfx:1", f"--vertex_spec={spec}", "--dataflow",
          "--gcp_project=p", "--gcp_region=europe-west4", "--dataflow_max_workers=32"]
  assert cli.main(argv) == 0
  assert str(spec) in capsys.readouterr().out
  text = spec.read_text()
  for expected in ("--runner=DataflowRunner", "--project=p", "--region=europe-west4",
                   "--temp_location=gs://bucket/rn/tmp", "--max_num_workers=32",
                   "gs://bucket/coco/annotations/instances_train2017.json",
                   "gs://bucket/rn/serving/retinanet", "gs://bucket/rn/pipeline_root"):
    assert expected in text, expected
  assert json.loads(text)["pipelineSpec"]["pipelineInfo"]["name"] == "retinanet"


def test_dataflow_needs_a_project(tmp_path, capsys):
  with pytest.raises(SystemExit, match="--dataflow needs --gcp_project"):
    cli.main(["--runner=vertex", "--gcs_root=gs://b/x", "--dataset=coco2017",
              "--coco_dir=gs://b/coco", "--dataflow", f"--vertex_spec={tmp_path}/s.json"])


def test_local_beam_args_default_to_the_direct_runner():
  args = cli.build_parser().parse_args([])
  beam_args = beam_options.beam_args(args)
  assert any(a.startswith("--direct_running_mode=") for a in beam_args)
  assert "--sdk_container_image=unused-by-direct-runner" in beam_args
  args = cli.build_parser().parse_args(["--direct_mode=in_memory", "--beam_arg=--foo=1"])
  assert beam_options.beam_args(args)[0] == "--direct_running_mode=in_memory"
  assert beam_options.beam_args(args)[-1] == "--foo=1"


def test_seed_makes_runs_reproducible_by_default_and_set_wins():
  from pipeline import run
  parse = cli.build_parser().parse_args
  config = run.load_experiment_config(parse([]))
  assert (config.train.seed, config.input.seed, config.input.deterministic) == (0, 0, True)
  config = run.load_experiment_config(parse(["--seed=7"]))
  assert (config.train.seed, config.input.seed, config.input.deterministic) == (7, 7, True)
  # --set comes after --seed; -1 keeps the config's own settings.
  config = run.load_experiment_config(parse(["--seed=7", "--set", "input.seed=3"]))
  assert (config.train.seed, config.input.seed) == (7, 3)
  config = run.load_experiment_config(parse(["--seed=-1"]))
  assert config.input.deterministic is False
