"""The quiet console: known library noise is dropped, everything else still shows."""
import logging
import os
import re
import subprocess
import sys
import textwrap
import warnings

import pytest

from retinanet import console

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_native_stderr_filter_drops_only_the_known_lines():
  script = textwrap.dedent("""
      import os, sys
      from retinanet import console
      console.filter_native_stderr()
      os.write(2, b"E cuda_dnn.cc] Unable to register cuDNN factory: Attempting to register factory for plugin cuDNN\\n")
      os.write(2, b"a real error line\\n")
      sys.stderr.write("python stderr stays\\n")
      os.write(2, b"W py_utils.cc] TF-TRT Warning: Could not find TensorRT\\n")
      # A Beam worker process's start-up lines (it inherits the filtered descriptor).
      os.write(2, b"/x/google/api_core/_python_version_support.py:246: FutureWarning: You are using a non-supported Python version (3.10.13).\\n")
      os.write(2, b"  warnings.warn(message, FutureWarning)\\n")
      os.write(2, b"INFO No semi_persistent_directory found: Functions defined in __main__ (interactive session) may fail.\\n")
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
  caplog.clear()
  tf_logger = logging.getLogger("tensorflow")
  with caplog.at_level(logging.WARNING, logger="tensorflow"):
    tf_logger.warning("Issue encountered when serializing tft_analyzer_use.\nType is ...")
    tf_logger.warning("From /x/signature_def_utils_impl.py:225: build_tensor_info (from "
                      "tensorflow.python.saved_model.utils_impl) is deprecated and will be removed")
    tf_logger.warning("From /x/y.py:1: some_other_api (from tensorflow.z) is deprecated")
  assert [r.getMessage() for r in caplog.records] == [
      "From /x/y.py:1: some_other_api (from tensorflow.z) is deprecated"]
  console.quiet_python_noise()  # idempotent: one filter, not two
  assert sum(isinstance(f, console.DropMessages) for f in absl.filters) == 1
  assert sum(isinstance(f, console.DropMessages) for f in tf_logger.filters) == 1


@pytest.mark.parametrize("verbose", [False, True])
def test_every_python_m_tool_starts_with_the_filtered_console(verbose, tmp_path):
  """`python -m retinanet.serving.inference` as the README runs it, on a missing model dir:
  the error in one line and, without --verbose, none of TensorFlow's start-up noise."""
  argv = [sys.executable, "-m", "retinanet.serving.inference", "--model_dir",
          str(tmp_path / "missing"), "--image_dir", str(tmp_path), "--output_dir",
          str(tmp_path / "out")] + (["--verbose"] if verbose else [])
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
  assert result.returncode == 2, result.stderr
  assert "error: --model_dir=" in result.stderr and "Traceback" not in result.stderr
  if not verbose:  # with --verbose everything passes (what TensorFlow prints is its choice)
    noise = [line for line in result.stderr.splitlines()
             if any(re.search(p, line) for p in console.NATIVE_NOISE)]
    assert noise == [], noise
