"""The Vertex AI pipeline spec compiled from the README's scale-out flags, and the weekly
schedule of the continuous-training pipeline (latest span, warm start, data validation),
equal the committed golden files, code fingerprints aside: a refactor that changes what
Vertex would run shows up here as a diff to review (and, if intended, to commit with
`--update`).

    .venv/bin/python tests/test_vertex_golden.py --update   # rewrite the golden file
"""
import difflib
import json
import os
import re
import sys

import pytest

GOLDEN = os.path.join(os.path.dirname(__file__), "fixtures", "vertex_spec_golden.json")
FLAGS = ["--runner=vertex", "--vertex_image=us-docker.pkg.dev/p/r/retinanet-tfx:1",
         "--gcs_root=gs://b/rn", "--dataset=coco2017", "--coco_dir=gs://b/coco",
         "--config=coco/retinanet-r50-640-1x-b64-8gpu", "--dataflow", "--gcp_project=p",
         "--vertex_training", "--train_accelerator_type=NVIDIA_TESLA_V100",
         "--train_accelerator_count=4", "--train_workers=2"]


def normalized_spec(path: str) -> str:
  """The spec as sorted JSON, each component's 16-hex code fingerprint replaced."""
  text = open(path).read()
  text = re.sub(r'(\\"code_version\\": \\")[0-9a-f]{16}', r"\1<fingerprint>", text)
  text = re.sub(r'("code_version"\s*:\s*\{[^}]*"stringValue"\s*:\s*")[0-9a-f]{16}',
                r"\1<fingerprint>", text)
  return json.dumps(json.loads(text), indent=1, sort_keys=True) + "\n"


SPANS_GOLDEN = os.path.join(os.path.dirname(__file__), "fixtures",
                            "vertex_spans_schedule_golden.json")
SPANS_FLAGS = ["--runner=vertex", "--vertex_image=us-docker.pkg.dev/p/r/retinanet-tfx:1",
               "--gcs_root=gs://b/rn", "--dataset=spans",
               "--span_pattern=gs://b/drops/span-{SPAN}", "--continue_steps=300",
               "--schedule=TZ=UTC 0 6 * * 1"]
CASES = {"scale-out spec": (FLAGS, GOLDEN, False),
         "spans schedule": (SPANS_FLAGS, SPANS_GOLDEN, True)}


def compile_spec(output_path: str, flags=FLAGS, schedule: bool = False) -> str:
  """The normalized spec the flags compile to (with `schedule`: the schedule request)."""
  from pipeline import cli, run  # pylint: disable=g-import-not-at-top
  assert cli.main(flags + [f"--vertex_spec={output_path}"]) == 0
  return normalized_spec(run.schedule_path_of(output_path) if schedule else output_path)


@pytest.mark.parametrize("case", sorted(CASES))
def test_compiled_spec_equals_the_golden_spec(case, tmp_path):
  flags, golden, schedule = CASES[case]
  got = compile_spec(str(tmp_path / "spec.json"), flags, schedule)
  want = open(golden).read()
  diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), "golden",
                                      "compiled", n=2))
  assert got == want, f"the compiled Vertex spec changed:\n{diff[:6000]}"
  assert "<fingerprint>" in got     # the normalization applied: fingerprints are there


def test_the_spans_schedule_runs_weekly_without_cache_and_validates_before_training(tmp_path):
  schedule = json.loads(compile_spec(str(tmp_path / "spec.json"), SPANS_FLAGS, True))
  assert schedule["cron"] == "TZ=UTC 0 6 * * 1" and schedule["maxConcurrentRunCount"] == "1"
  job = schedule["createPipelineJobRequest"]["pipelineJob"]
  tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
  assert all(t["cachingOptions"]["enableCache"] is False for t in tasks.values())
  assert {"CocoExampleGen", "DataValidator", "CurrentSchemaResolver", "RetinaNetTrainer",
          "LatestBlessedModelResolver-model-resolver"} <= set(tasks)
  trainer_inputs = tasks["RetinaNetTrainer"]["inputs"]["artifacts"]
  assert {"anomalies", "base_model", "examples"} <= set(trainer_inputs)
  params = tasks["CocoExampleGen"]["inputs"]["parameters"]
  assert params["span_pattern"]["runtimeValue"]["constantValue"]["stringValue"] == (
      "gs://b/drops/span-{SPAN}")


if __name__ == "__main__" and "--update" in sys.argv:
  import tempfile  # pylint: disable=g-import-not-at-top
  for flags, golden, schedule in CASES.values():
    with tempfile.TemporaryDirectory() as tmp:
      with open(golden, "w") as f:
        f.write(compile_spec(os.path.join(tmp, "spec.json"), flags, schedule))
    print(f"wrote {golden}")
