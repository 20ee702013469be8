#!/usr/bin/env python
"""Runs the RetinaNet TFX pipeline. `python run_pipeline.py --help` for every flag."""
import sys


if __name__ == "__main__":
  from retinanet import console  # pylint: disable=g-import-not-at-top
  console.start_cli(sys.argv[1:])  # before TensorFlow prints its CUDA-plugin errors
  from pipeline import cli  # pylint: disable=g-import-not-at-top
  sys.exit(cli.main(sys.argv[1:]))
