"""RetinaNet in pure TensorFlow + tf_keras (no TFX imports).

Usable on its own (e.g. from a notebook); the TFX components in `components/`
are thin adapters around it.

Importing this package selects Keras 2 for TensorFlow (TF_USE_LEGACY_KERAS=1): the one
place the project sets it. The other packages import it first, so every entry point
(run_pipeline.py, the `python -m` tools, Beam workers, tests) has it set before
TensorFlow loads; the container image sets it too, for TFX's own entry points.
"""
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# `python -m retinanet.X` (or data.X, pipeline.X, whose packages import this one): a
# command-line tool is starting. Python imports the packages while it locates the module,
# when sys.argv[0] is still "-m"; the console is quieted here, before TensorFlow loads
# (retinanet/console.py; --verbose shows everything).
if sys.argv[:1] == ["-m"]:
  from retinanet import console  # pylint: disable=g-import-not-at-top
  console.start_cli(sys.argv[1:])
