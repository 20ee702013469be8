#!/usr/bin/env python
"""Runs the RetinaNet TFX pipeline. `python run_pipeline.py --help` for every flag."""
import os
import sys


if __name__ == "__main__":
  if "--verbose" in sys.argv[1:]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
  else:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from pipeline import console  # pylint: disable=g-import-not-at-top
    console.filter_native_stderr()  # before TensorFlow prints its CUDA-plugin errors
    console.quiet_python_noise()
  from pipeline import cli  # pylint: disable=g-import-not-at-top
  sys.exit(cli.main(sys.argv[1:]))
