"""The quiet console: known library noise is dropped, everything else still shows."""
import logging
import os
import subprocess
import sys
import textwrap
import warnings

from pipeline import console

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_native_stderr_filter_drops_only_the_known_lines():
  script = textwrap.dedent("""
      import os, sys
      from pipeline import console
      console.filter_native_stderr()
      os.write(2, b"E cuda_dnn.cc] Unable to register cuDNN factory: Attempting to register factory for plugin cuDNN\\n")
      os.write(2, b"a real error line\\n")
      sys.stderr.write("python stderr stays\\n")
      os.write(2, b"W py_utils.cc] TF-TRT Warning: Could not find TensorRT\\n")
      os.write(2, b"last line without newline")
      """)
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), timeout=60)
  assert result.returncode == 0
  assert result.stderr == ("a real error line\npython stderr stays\nlast line without newline")


def test_python_noise_filters_are_exact(caplog):
  console.quiet_python_noise()
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("default")
    console.quiet_python_noise()  # re-applied inside the recording context
    warnings.warn("You are using a non-supported Python version (3.10.13).", FutureWarning)
    warnings.warn("Some other future change", FutureWarning)
  assert [str(w.message) for w in caught] == ["Some other future change"]
  absl = logging.getLogger("absl")
  with caplog.at_level(logging.WARNING, logger="absl"):
    absl.warning("ArtifactQuery.property_predicate is not supported.")
    absl.warning("a real absl warning")
  assert [r.getMessage() for r in caplog.records] == ["a real absl warning"]
  console.quiet_python_noise()  # idempotent: one filter, not two
  assert sum(isinstance(f, console.DropMessages) for f in absl.filters) == 1
