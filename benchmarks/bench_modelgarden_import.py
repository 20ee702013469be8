"""Importing a full-size TF Model Garden RetinaNet (R50-FPN, 640x640, 91 classes): equality.

    .venv/bin/python benchmarks/bench_modelgarden_import.py [--venv PATH] [--write_markdown]

Model Garden runs in its own venv (created on first use like
bench_modelgarden_parity.py, default .venv-modelgarden): there
benchmarks/modelgarden_import_side.py --size full builds Model Garden's
`retinanet_resnetfpn_coco` network with random weights (BN statistics
included), writes its checkpoint in the layout of the published ones and its
raw per-level outputs on one random image. Here the checkpoint is imported
(retinanet/modeling/modelgarden_import.py: architecture inferred from the
shapes, every variable mapped) and our model's per-level outputs are compared.
Writes "## Model Garden checkpoint import" in BENCHMARKS.md with --write_markdown.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_modelgarden_parity as parity  # noqa: E402  pylint: disable=g-import-not-at-top
import common  # noqa: E402  pylint: disable=g-import-not-at-top

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

HEADING = "## Model Garden checkpoint import"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--venv", default=parity.DEFAULT_VENV)
  parser.add_argument("--write_markdown", action="store_true")
  args = parser.parse_args(argv)
  from retinanet import task  # pylint: disable=g-import-not-at-top
  from retinanet.modeling import modelgarden_import  # pylint: disable=g-import-not-at-top
  parity.ensure_venv(args.venv, sys.executable)
  with tempfile.TemporaryDirectory(prefix="mg_import_") as tmp:
    mg_dir = os.path.join(tmp, "modelgarden")
    start = time.perf_counter()
    side = subprocess.run(
        [os.path.join(args.venv, "bin", "python"),
         os.path.join(common.ROOT, "benchmarks", "modelgarden_import_side.py"), "--size", "full",
         mg_dir], capture_output=True, text=True, check=False)
    if side.returncode != 0:
      raise RuntimeError(f"Model Garden side failed:\n{side.stderr[-3000:]}")
    mg_seconds = time.perf_counter() - start
    mg_report = side.stdout.strip().splitlines()[-1]
    start = time.perf_counter()
    info = modelgarden_import.import_checkpoint(os.path.join(mg_dir, "ckpt"),
                                                os.path.join(tmp, "ours"))
    import_seconds = time.perf_counter() - start
    model, config, label_map, _ = task.load_model_dir(os.path.join(tmp, "ours"))
    trainable = common.weight_count(model)
    reference = np.load(os.path.join(mg_dir, "outputs.npz"))
    classes, boxes = model.call_per_level(tf.constant(reference["images"]), training=False)
    rows = []
    for level in range(3, 8):
      c, b = classes[level].numpy(), boxes[level].numpy()
      rows.append(f"| P{level} | {list(c.shape[1:3])} | "
                  f"{np.abs(c - reference[f'cls_{level}']).max():.1e} | "
                  f"{np.abs(reference[f'cls_{level}']).max():.2f} | "
                  f"{np.abs(b - reference[f'box_{level}']).max():.1e} | "
                  f"{np.abs(reference[f'box_{level}']).max():.2f} |")
  lines = [HEADING, "",
           f"Machine: {common.machine_description()}. Command: `python "
           "benchmarks/bench_modelgarden_import.py --write_markdown`. Model Garden "
           "(tf-models-official 2.16.0, its own venv) built `retinanet_resnetfpn_coco` "
           f"(ResNet-50 FPN, 640x640, 91 classes) with random weights ({mg_report}; "
           f"{mg_seconds:.0f} s including its imports) and wrote its checkpoint; we imported it "
           f"in {import_seconds:.0f} s: {info['variables']} variables ({info['parameters']:,} "
           f"values: {trainable:,} parameters plus batch-norm moving statistics), "
           f"inferred as ResNet-{config.model.backbone.depth}, FPN "
           f"{config.model.fpn.num_channels}, heads {config.model.head.num_convs} x "
           f"{config.model.head.num_channels}, {label_map.num_classes} classes. Raw outputs of "
           "`model(image, training=False)` on the same random image, per level:", "",
           "| level | feature map | class logits: max abs difference | max abs value | "
           "box outputs: max abs difference | max abs value |", "|---|---|---|---|---|---|",
           *rows]
  common.publish("\n".join(lines), HEADING, args.write_markdown)
  return 0


if __name__ == "__main__":
  sys.exit(main())
