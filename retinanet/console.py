"""A quiet console for every command-line tool: known library noise is dropped at its source.

`run_pipeline.py` and every `python -m retinanet|data|pipeline...` tool start
with it (`start_cli`, called from retinanet/__init__.py before TensorFlow
loads); `--verbose` turns every filter off. Three sources, each filtered by
exact, known patterns, so that real errors and warnings still show:
  - native stderr: TensorFlow's CUDA-plugin registration errors and its CPU/GPU
    notices, printed by C++ before Python logging exists. `filter_native_stderr`
    routes file descriptor 2 through a thread that drops matching lines (child
    processes such as Beam's worker processes inherit the filtered descriptor, so
    their own start-up lines, WORKER_NOISE, are dropped there too);
  - Python warnings: google-api-core's FutureWarning about Python 3.10, repeated
    by every Google client it loads, and aiplatform's about google-cloud-storage 2
    (which TFX 1.16 pins);
  - log records: what TFX repeats (absl) for every resolver query or partial run, and
    what tensorflow-transform's TF1 graph mode makes TensorFlow log (LOG_NOISE).
"""
from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
import warnings
from typing import Sequence

NATIVE_NOISE = (
    r"Unable to register (cuDNN|cuFFT|cuBLAS) factory: Attempting to register factory",
    r"TF-TRT Warning: Could not find TensorRT",
    r"Could not find cuda drivers on your machine, GPU will not be used",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"To enable the following instructions: .* in other operations, rebuild TensorFlow",
    r"oneDNN custom operations are on\. You may see slightly different numerical results",
    # A notice at error level, printed on the first uint8 op (the serving signatures'
    # images, the data pipeline's decode) by CPUs without oneDNN's int8 instructions.
    r"oneDNN supports DT_UINT8 only on platforms with AVX-512\. Falling back to the default",
)
# What a Beam worker process (multi-process DirectRunner) prints at start-up, before
# any code of ours runs in it: google-api-core's FutureWarning (two lines: the message
# and the source line Python shows under it) and the SDK harness's notice.
WORKER_NOISE = (
    r"FutureWarning: You are using a non-supported Python version",
    r"^\s+warnings\.warn\(message, FutureWarning\)$",
    r"No semi_persistent_directory found: Functions defined in __main__",
)
PYTHON_WARNING_NOISE = (
    # (message regex, category)
    (r"You are using a non-supported Python version", FutureWarning),
    (r"Support for google-cloud-storage < 3\.0\.0 will be removed", FutureWarning),
)
# Log records (regexes matched at the message's start), by logger.
LOG_NOISE = {
    "absl": (
        r"ArtifactQuery\.property_predicate is not supported",
        # TFX's partial-run bookkeeping (the new run has no context yet), several lines long.
        r"base run context None or new pipeline run context id",
        # The statistics stage runs tensorflow-transform in its TF1 graph mode on purpose.
        r"Tensorflow Transform is running in tf\.compat\.v1 mode",
    ),
    "tensorflow": (  # what tensorflow-transform's TF1 graph mode makes TensorFlow say
        r"Issue encountered when serializing tft_analyzer_use",
        r"From \S+: build_tensor_info \(from tensorflow\.python\.saved_model\.utils_impl\) "
        r"is deprecated",
    ),
}


class DropMessages(logging.Filter):
  """Drops log records whose message matches one of `patterns` at its start."""

  def __init__(self, patterns: Sequence[str]):
    super().__init__()
    self._regex = re.compile("|".join(f"(?:{p})" for p in patterns))

  def filter(self, record: logging.LogRecord) -> bool:
    return not self._regex.match(record.getMessage())


def quiet_python_noise() -> None:
  """Python-level filters: the known warnings and log records (safe in-process, e.g. tests)."""
  for message, category in PYTHON_WARNING_NOISE:
    warnings.filterwarnings("ignore", message=message, category=category)
  for name, patterns in LOG_NOISE.items():
    logger = logging.getLogger(name)
    if not any(isinstance(f, DropMessages) for f in logger.filters):
      logger.addFilter(DropMessages(patterns))


def filter_native_stderr(patterns: Sequence[str] = NATIVE_NOISE + WORKER_NOISE) -> None:
  """Routes file descriptor 2 through a thread that drops lines matching `patterns`.

  Call once, before TensorFlow is imported. Every other line is copied to the
  original stderr unchanged; at exit the pipe is drained before the process ends.
  """
  regex = re.compile("|".join(f"(?:{p})" for p in patterns))
  original = os.dup(2)
  read_fd, write_fd = os.pipe()
  sys.stderr.flush()
  os.dup2(write_fd, 2)
  os.close(write_fd)

  def pump() -> None:
    pending = b""
    while True:
      chunk = os.read(read_fd, 65536)
      if not chunk:
        break
      pending += chunk
      *lines, pending = pending.split(b"\n")
      for line in lines:
        if not regex.search(line.decode("utf-8", "replace")):
          os.write(original, line + b"\n")
    if pending and not regex.search(pending.decode("utf-8", "replace")):
      os.write(original, pending)

  thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
  thread.start()

  def restore() -> None:
    sys.stderr.flush()
    os.dup2(original, 2)  # this process stops writing into the pipe
    thread.join(timeout=2.0)  # children that still hold it may keep it open

  atexit.register(restore)


VERBOSE_FLAG = "--verbose"


def add_verbose_flag(parser) -> None:
  """The --verbose flag every tool takes (start_cli reads it from argv before parsing)."""
  parser.add_argument(VERBOSE_FLAG, action="store_true",
                      help="Show every library message (TensorFlow's C++ logs, Python "
                           "warnings) instead of the filtered console (retinanet/console.py).")


def start_cli(argv: Sequence[str]) -> bool:
  """Sets up a command-line tool's console before TensorFlow loads; returns verbose.

  Without VERBOSE_FLAG in `argv`: TensorFlow's C++ log level 2 (unless set), the
  native stderr filter and the Python-level filters. With it: level 0 and no filter.
  Runs once per process.
  """
  global _STARTED
  verbose = VERBOSE_FLAG in argv
  if _STARTED:
    return verbose
  _STARTED = True
  if verbose:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
    return True
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  filter_native_stderr()
  quiet_python_noise()
  return False


_STARTED = False
