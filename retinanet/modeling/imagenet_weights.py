r"""Converts user-supplied Keras-applications ImageNet weights into a backbone checkpoint.

Nothing is downloaded: pass the "no top" h5 file that
`tf_keras.applications.<Model>(weights="imagenet", include_top=False)` would
fetch (it lands in ~/.keras/models/ on a machine with internet). Everything
else (backbone type, ResNet depth, MobileNetV3 width and minimalistic flag,
input normalization, BN epsilon, padding) comes from the experiment config
that will train with the checkpoint, so the two always agree:

    python -m retinanet.modeling.imagenet_weights \
        --config=coco/retinanet-mobilenetv3large-384-3x-b256-v3-32 \
        --weights=weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5 \
        --output=pretrained/mobilenet_v3_large-imagenet/ckpt

and train with --set model.backbone.init_checkpoint=pretrained/mobilenet_v3_large-imagenet/ckpt
(the shipped configs already point there).
"""
from __future__ import annotations


import argparse
from typing import Optional, Sequence

from retinanet import config as config_lib
from retinanet import console


def convert(config: config_lib.ExperimentConfig, weights: str, output_prefix: str) -> str:
  """Maps `weights` onto the backbone of `config`; returns the checkpoint path."""
  from retinanet import factory  # pylint: disable=g-import-not-at-top
  from retinanet.modeling import mobilenet_v3, resnet  # pylint: disable=g-import-not-at-top
  b, m = config.model.backbone, config.model
  common = dict(weights=weights, output_prefix=output_prefix, mean_rgb=config.input.mean_rgb,
                stddev_rgb=config.input.stddev_rgb, norm_epsilon=m.norm.epsilon)
  if b.type in factory.MOBILENET_V3_TYPES:
    return mobilenet_v3.keras_applications_to_checkpoint(
        variant=factory.MOBILENET_V3_TYPES[b.type], width_multiplier=b.width_multiplier,
        minimalistic=b.minimalistic, padding=m.padding, **common)
  if b.width_multiplier != 1.0 or not b.stride_in_1x1:
    raise config_lib.ConfigError(
        "Keras-applications ResNet weights need model.backbone.width_multiplier=1 and "
        "model.backbone.stride_in_1x1=true")
  return resnet.keras_applications_to_checkpoint(depth=b.depth, **common)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True,
                      help="shipped config name or JSON path of the training that will use it")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="config overrides, as for run_pipeline.py")
  parser.add_argument("--weights", required=True, help="Keras-applications no-top .h5 file")
  parser.add_argument("--output", required=True, help="checkpoint prefix to write")
  console.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  from retinanet.configs import load_named_config  # pylint: disable=g-import-not-at-top
  config = config_lib.apply_overrides(load_named_config(args.config), args.set)
  path = convert(config, args.weights, args.output)
  print(f"Wrote {path}: {config.model.backbone.type} backbone weights from {args.weights}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
