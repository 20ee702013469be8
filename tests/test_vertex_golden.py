"""The Vertex AI pipeline spec compiled from the README's scale-out flags equals the committed
golden spec, code fingerprints aside: a refactor that changes what Vertex would run shows up
here as a diff to review (and, if intended, to commit with `--update`).

    .venv/bin/python tests/test_vertex_golden.py --update   # rewrite the golden file
"""
import difflib
import json
import os
import re
import sys

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


def compile_spec(output_path: str) -> str:
  from pipeline import cli  # pylint: disable=g-import-not-at-top
  assert cli.main(FLAGS + [f"--vertex_spec={output_path}"]) == 0
  return normalized_spec(output_path)


def test_compiled_spec_equals_the_golden_spec(tmp_path):
  got = compile_spec(str(tmp_path / "spec.json"))
  want = open(GOLDEN).read()
  diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), "golden",
                                      "compiled", n=2))
  assert got == want, f"the compiled Vertex spec changed:\n{diff[:6000]}"
  assert "<fingerprint>" in got     # the normalization applied: fingerprints are there


if __name__ == "__main__" and "--update" in sys.argv:
  import tempfile  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    with open(GOLDEN, "w") as f:
      f.write(compile_spec(os.path.join(tmp, "spec.json")))
  print(f"wrote {GOLDEN}")
