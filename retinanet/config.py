"""The one typed config tree of the detector.

Every section is a frozen-free dataclass; `load_config` / `config_from_dict`
reject unknown keys (naming the full dotted path) and `validate` runs the
cross-field checks. Library functions never take the whole tree: factories
(`retinanet/factory.py`) unpack it into explicit arguments.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type, TypeVar

from retinanet import fileio

BACKBONE_DEPTHS = (18, 34, 50, 101, 152)
# "resnet" (model.backbone.depth) or a MobileNetV3 (retinanet/modeling/mobilenet_v3.py).
BACKBONE_TYPES = ("resnet", "mobilenet_v3_large", "mobilenet_v3_small")
NMS_MODES = ("combined", "per_class_hard", "per_class_soft", "global_hard", "global_soft")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
LR_SCHEDULES = ("piecewise", "cosine")
OPTIMIZERS = ("sgd", "adamw")
NAN_POLICIES = ("raise", "restore")
P6_SOURCES = ("c5", "p5")
BOX_LOSSES = ("huber", "giou")
# model.matcher.low_quality_rule (their meaning: retinanet/ops/matcher.py).
LOW_QUALITY_RULES = ("all_ties", "first_argmax")
# Model Garden's retinanet_resnetfpn_coco: unscaled deltas (box_coder_weights=None),
# Huber delta 0.1, box loss weight 50. The box-loss convention check below
# compares any (variances, delta, weight) with these in unscaled-delta units.
REFERENCE_HUBER_DELTA = 0.1
REFERENCE_BOX_LOSS_WEIGHT = 50.0
# The seed's (and keras.io RetinaNet's) scaled variant, consistent with itself:
# targets scaled by 10/10/5/5 and a Huber loss tuned for that scale. In unscaled
# units it bends at 0.1 (centre) / 0.2 (size) anchor units and weighs 100 / 25.
SCALED_BOX_VARIANCES = (0.1, 0.1, 0.2, 0.2)
SCALED_HUBER_DELTA = 1.0
SCALED_BOX_LOSS_WEIGHT = 1.0
# Accepted ranges of the effective (unscaled) Huber bend and box weight.
EFFECTIVE_HUBER_DELTA_RANGE = (0.02, 0.5)
EFFECTIVE_BOX_WEIGHT_RANGE = (5.0, 500.0)
GIOU_BOX_LOSS_WEIGHT_RANGE = (0.1, 10.0)


# model.backbone.init_checkpoint="modelgarden:PREFIX" and --finetune_from=modelgarden:PREFIX
# read a TF Model Garden checkpoint (retinanet/task.py, retinanet/modeling/modelgarden_import.py).
MODELGARDEN_SCHEME = "modelgarden:"


class ConfigError(ValueError):
  """A config that cannot be used; the message names the offending key."""


@dataclasses.dataclass
class BackboneConfig:
  # One of BACKBONE_TYPES.
  type: str = "resnet"
  # ResNet depth (type "resnet" only).
  depth: int = 50
  # Freezes the stem and the first residual stage (conv1 + conv2_x), as in
  # Detectron / Model Garden when starting from ImageNet weights.
  freeze_stem_and_first_stage: bool = True
  # Use the moving statistics of every backbone batch norm and keep its gamma/beta
  # fixed (frozen BN, as torchvision / detectron2 FrozenBatchNorm2d).
  freeze_batch_norm: bool = False
  # A backbone checkpoint (prefix or directory) written by
  # retinanet.modeling.resnet.save_backbone_checkpoint or keras_applications_to_checkpoint
  # (which converts Keras-applications ImageNet h5 weights); "" = random init.
  init_checkpoint: str = ""
  # Stride of a downsampling bottleneck in its 1x1 conv (MSRA/Caffe/Keras-applications
  # ImageNet weights) instead of its 3x3 conv (torchvision / Model Garden, "v1.5").
  stride_in_1x1: bool = False
  # Scales every backbone channel count (1.0 = the standard ResNet; MobileNetV3's
  # alpha). Below 1 it makes a CPU-sized network for small datasets (the sample
  # config uses 0.5); ImageNet checkpoints need the width they were trained at.
  width_multiplier: float = 1.0
  # MobileNetV3 only: no squeeze-and-excite, hard-swish or 5x5 kernels (Keras' variant).
  minimalistic: bool = False


@dataclasses.dataclass
class FpnConfig:
  min_level: int = 3
  max_level: int = 7
  num_channels: int = 256
  # P6 is computed from C5 (the paper, Detectron) or from P5 (torchvision, Model Garden).
  p6_source: str = "c5"
  # Batch norm on every output level (Model Garden).
  use_batch_norm: bool = False
  # Group norm on every output level instead (model.norm.group_norm_groups groups).
  use_group_norm: bool = False


@dataclasses.dataclass
class HeadConfig:
  num_convs: int = 4
  num_channels: int = 256
  # Depthwise-separable 3x3 convs (tower and prediction), as SSDLite and Model
  # Garden's mobile RetinaNet heads: ~9x fewer multiply-adds per conv.
  separable: bool = False
  # Bias of the final class conv is -log((1 - p) / p): every anchor starts
  # with foreground probability p (focal loss paper, section 4.1).
  prior_probability: float = 0.01
  # Batch norm after each tower conv, one per pyramid level (Model Garden).
  use_batch_norm: bool = False
  # Group norm after each tower conv, shared by all levels like the convs
  # (torchvision's retinanet_resnet50_fpn_v2, FCOS, ATSS).
  use_group_norm: bool = False


@dataclasses.dataclass
class AnchorConfig:
  # Anchor side at level l is anchor_size * 2**l before scales: 4 * 8 = 32 at P3.
  anchor_size: float = 4.0
  scales_per_octave: int = 3
  aspect_ratios: Tuple[float, ...] = (0.5, 1.0, 2.0)


@dataclasses.dataclass
class MatcherConfig:
  positive_iou: float = 0.5
  negative_iou: float = 0.4
  # Also match each ground-truth box to its best anchor(s) even below
  # positive_iou (Faster R-CNN style); off in the RetinaNet paper.
  allow_low_quality_matches: bool = False
  # Which best anchors those are (retinanet/ops/matcher.py): "all_ties" = every anchor
  # tied at a box's best IoU, matched to its own best box (Detectron2); "first_argmax" =
  # one anchor per box, matched to that box (Model Garden's force_match_for_each_col).
  low_quality_rule: str = "all_ties"
  # An anchor that would be background but lies inside a crowd region, i.e.
  # whose intersection with a crowd box covers at least this fraction of the
  # anchor's own area, is ignored (Detectron's CROWD_FILTER_THRESH = 0.7).
  crowd_ioa: float = 0.7


@dataclasses.dataclass
class NormConfig:
  momentum: float = 0.99
  epsilon: float = 1e-3
  # Cross-replica (synchronized) batch norm in FPN/heads/backbone.
  use_sync_bn: bool = False
  # Groups of every group norm (FPN / heads with use_group_norm); 32 as in the GN paper.
  group_norm_groups: int = 32


@dataclasses.dataclass
class ModelConfig:
  num_classes: int = 80
  input_size: Tuple[int, int] = (640, 640)
  # Padding of strided convs and the stem's max pool: "symmetric" (PyTorch/Detectron) or
  # "same" (TensorFlow SAME, as Model Garden trains; needed to import its weights exactly).
  padding: str = "symmetric"
  backbone: BackboneConfig = dataclasses.field(default_factory=BackboneConfig)
  fpn: FpnConfig = dataclasses.field(default_factory=FpnConfig)
  head: HeadConfig = dataclasses.field(default_factory=HeadConfig)
  anchors: AnchorConfig = dataclasses.field(default_factory=AnchorConfig)
  matcher: MatcherConfig = dataclasses.field(default_factory=MatcherConfig)
  norm: NormConfig = dataclasses.field(default_factory=NormConfig)
  # Regression targets are deltas / variances (retinanet/ops/box_coder.py).
  # (1, 1, 1, 1) = unscaled deltas, the convention of Model Garden, detectron2
  # and torchvision, for which loss.huber_delta=0.1 and box_loss_weight=50 are
  # tuned. The seed's scaled variant (0.1, 0.1, 0.2, 0.2) needs its own loss
  # settings (huber_delta 1.0, box_loss_weight 1.0); `validate` rejects mixes.
  box_variances: Tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)

  @property
  def num_anchors_per_location(self) -> int:
    return self.anchors.scales_per_octave * len(self.anchors.aspect_ratios)


@dataclasses.dataclass
class LossConfig:
  focal_alpha: float = 0.25
  focal_gamma: float = 2.0
  # "huber": Huber loss on the encoded deltas (Model Garden, the paper's smooth L1).
  # "giou": 1 - GIoU of the decoded predicted and matched boxes (torchvision v2);
  # weight it ~1 (GIOU_BOX_LOSS_WEIGHT_RANGE), huber_delta is then unused.
  box_loss: str = "huber"
  huber_delta: float = 0.1
  box_loss_weight: float = 50.0
  # 0 = normalize by this batch's positive anchors; in (0, 1) = by a moving
  # average of that count (Detectron2's loss_normalizer_momentum = 0.9).
  normalizer_momentum: float = 0.0
  # Added to the positive-anchor count before it divides the losses. 0 divides by
  # max(positives, 1) (Detectron2, torchvision); Model Garden divides by positives + 1
  # (its RetinaNetTask.build_losses): 1.0 reproduces its losses exactly.
  positives_offset: float = 0.0
  l2_weight_decay: float = 1e-4


@dataclasses.dataclass
class InputConfig:
  # Scale jitter range relative to the output size (seed: 0.1 .. 2.0).
  scale_min: float = 0.1
  scale_max: float = 2.0
  horizontal_flip: bool = True
  shuffle_buffer: int = 1024
  # Ground-truth boxes are padded / truncated to this many per image.
  max_instances: int = 100
  cycle_length: int = 16
  # Deterministic order and augmentation seeds (tests, reproducibility).
  deterministic: bool = False
  seed: int = 0
  mean_rgb: Tuple[float, float, float] = (0.485 * 255, 0.456 * 255, 0.406 * 255)
  stddev_rgb: Tuple[float, float, float] = (0.229 * 255, 0.224 * 255, 0.225 * 255)


@dataclasses.dataclass
class OptimizerConfig:
  # "sgd": SGD with momentum (the paper, Detectron, Model Garden), weight decay
  # as the L2 loss term loss.l2_weight_decay. "adamw": AdamW with decoupled
  # `weight_decay` on conv/dense kernels only (torchvision's v2 detection
  # recipe, --norm-weight-decay 0). base_learning_rate is for the global batch.
  type: str = "sgd"
  momentum: float = 0.9
  weight_decay: float = 0.0
  base_learning_rate: float = 0.08
  warmup_steps: int = 500
  warmup_learning_rate: float = 0.0067
  schedule: str = "piecewise"
  # Piecewise: decay by each rate at each boundary step (absolute steps).
  boundaries: Tuple[int, ...] = (15000, 20000)
  decay_rates: Tuple[float, ...] = (0.1, 0.01)
  # Cosine: decays to base * cosine_alpha at total_steps.
  cosine_alpha: float = 0.0
  # Clip by global norm; 0 = no clipping.
  gradient_clip_norm: float = 0.0
  # Exponential moving average of weights; 0 = off.
  ema_decay: float = 0.0


@dataclasses.dataclass
class TrainConfig:
  global_batch_size: int = 64
  total_steps: int = 22500
  steps_per_execution: int = 100
  checkpoint_every: int = 1000
  keep_checkpoints: int = 5
  log_every: int = 100
  mixed_precision: str = "float32"
  jit_compile: bool = False
  # On NaN/Inf loss: "raise" stops naming the step; "restore" reloads the last
  # checkpoint and continues (at most max_nan_restores times).
  nan_policy: str = "raise"
  max_nan_restores: int = 3
  # Evaluate with COCO metrics every N steps inside training; 0 = off.
  eval_every: int = 0
  strategy: str = "default"
  seed: int = 0


@dataclasses.dataclass
class PostprocessConfig:
  nms_mode: str = "combined"
  # Candidates kept per level before NMS (by score).
  pre_nms_top_k: int = 1000
  score_threshold: float = 0.05
  iou_threshold: float = 0.5
  # Gaussian soft-NMS sigma (Bodla et al. 2017) for the *_soft modes.
  soft_nms_sigma: float = 0.5
  max_detections: int = 100
  # combined mode: max boxes per class before the final top-k.
  max_detections_per_class: int = 100
  # Encoded-image signatures (serve_encoded*) turn a JPEG by its EXIF orientation
  # before detection, so boxes and image_size are in the displayed frame (the
  # frame of the training boxes); false keeps the stored (sensor) pixel order.
  apply_exif_orientation: bool = True


@dataclasses.dataclass
class EvalConfig:
  batch_size: int = 8
  # Evaluate at most this many images; 0 = the whole split.
  max_images: int = 0
  # COCOeval implementation: "faster_coco_eval" (C++, same numbers) or "pycocotools".
  coco_backend: str = "faster_coco_eval"


ANCHOR_FIT_POLICIES = ("log", "fail", "adopt")
PADDINGS = ("symmetric", "same")  # what they mean: retinanet/modeling/resnet.py
COCO_BACKENDS = ("faster_coco_eval", "pycocotools")  # retinanet/evaluation/coco_metrics.py


@dataclasses.dataclass
class AnchorFitConfig:
  """What the Trainer does with the dataset statistics stage's anchor coverage.

  Coverage is the fraction of non-crowd training boxes whose best anchor reaches
  model.matcher.positive_iou (retinanet/ops/anchor_fit.py). Below `min_coverage`:
  "log" warns and trains as configured, "fail" stops before training, "adopt"
  trains with the suggested anchor size and aspect ratios. The Trainer writes
  what it did into `decision`, saved with the model's config.
  """
  policy: str = "log"
  min_coverage: float = 0.9
  decision: str = ""


@dataclasses.dataclass
class ExperimentConfig:
  name: str = "retinanet"
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  loss: LossConfig = dataclasses.field(default_factory=LossConfig)
  input: InputConfig = dataclasses.field(default_factory=InputConfig)
  optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
  postprocess: PostprocessConfig = dataclasses.field(default_factory=PostprocessConfig)
  eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
  anchor_fit: AnchorFitConfig = dataclasses.field(default_factory=AnchorFitConfig)


T = TypeVar("T")


def _convert(value: Any, hint: Any, path: str) -> Any:
  origin = typing.get_origin(hint)
  if dataclasses.is_dataclass(hint):
    if not isinstance(value, dict):
      raise ConfigError(f"{path}: expected an object, got {type(value).__name__}")
    return _from_dict(hint, value, path)
  if origin is tuple:
    if not isinstance(value, (list, tuple)):
      raise ConfigError(f"{path}: expected a list, got {value!r}")
    args = typing.get_args(hint)
    if len(args) == 2 and args[1] is Ellipsis:
      return tuple(_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
    if len(args) != len(value):
      raise ConfigError(f"{path}: expected {len(args)} values, got {len(value)}")
    return tuple(_convert(v, a, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
  if hint is bool:
    if not isinstance(value, bool):
      raise ConfigError(f"{path}: expected true/false, got {value!r}")
    return value
  if hint is int:
    if isinstance(value, bool) or not isinstance(value, int):
      raise ConfigError(f"{path}: expected an integer, got {value!r}")
    return value
  if hint is float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ConfigError(f"{path}: expected a number, got {value!r}")
    return float(value)
  if hint is str:
    if not isinstance(value, str):
      raise ConfigError(f"{path}: expected a string, got {value!r}")
    return value
  raise ConfigError(f"{path}: unsupported config type {hint}")


def _from_dict(cls: Type[T], data: Dict[str, Any], path: str = "") -> T:
  hints = typing.get_type_hints(cls)
  names = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(data) - names)
  if unknown:
    where = f"{path}." if path else ""
    raise ConfigError(
        f"unknown config key {where}{unknown[0]!s} (valid keys here: {', '.join(sorted(names))})")
  kwargs = {k: _convert(v, hints[k], f"{path}.{k}" if path else k) for k, v in data.items()}
  return cls(**kwargs)


def config_from_dict(data: Dict[str, Any]) -> ExperimentConfig:
  """Builds and validates a config; missing keys take their defaults."""
  config = _from_dict(ExperimentConfig, data)
  validate(config)
  return config


def config_to_dict(config: ExperimentConfig) -> Dict[str, Any]:
  def plain(v: Any) -> Any:
    if isinstance(v, tuple):
      return [plain(x) for x in v]
    if isinstance(v, dict):
      return {k: plain(x) for k, x in v.items()}
    return v
  return plain(dataclasses.asdict(config))


def config_overrides(config: ExperimentConfig,
                     base: Optional[ExperimentConfig] = None) -> Dict[str, Any]:
  """The part of config_to_dict(config) that differs from `base` (default: the defaults of
  the config tree), nested; the name is always kept. config_from_dict of it gives `config`
  back when `base` is the defaults."""
  def changed(value: Dict[str, Any], reference: Dict[str, Any]) -> Dict[str, Any]:
    out = {}
    for key, v in value.items():
      if isinstance(v, dict):          # a nested config section
        inner = changed(v, reference[key])
        if inner:
          out[key] = inner
      elif v != reference[key]:
        out[key] = v
    return out
  overrides = changed(config_to_dict(config), config_to_dict(base or ExperimentConfig()))
  return {"name": config.name, **overrides}


def load_config(path: str) -> ExperimentConfig:
  """Loads a JSON config (local path or gs://) with strict keys."""
  data = fileio.read_json(path, ConfigError)
  try:
    return config_from_dict(data)
  except ConfigError as e:
    raise ConfigError(f"{path}: {e}") from e


def save_config(config: ExperimentConfig, path: str, overrides_only: bool = False) -> None:
  """Sorted, indented JSON: every value, or (overrides_only) only what differs from the
  defaults, which loads to the same config."""
  data = config_overrides(config) if overrides_only else config_to_dict(config)
  fileio.write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def config_to_json(config: ExperimentConfig) -> str:
  return json.dumps(config_to_dict(config), sort_keys=True)


def apply_overrides(config: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
  """Returns a new validated config with `a.b.c=value` overrides applied.

  Values are parsed as JSON when possible (numbers, booleans, lists), else
  taken as strings; the key path is checked like any config key.
  """
  data = config_to_dict(config)
  for item in overrides:
    if "=" not in item:
      raise ConfigError(f"override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    try:
      value = json.loads(raw)
    except json.JSONDecodeError:
      value = raw
    node = data
    parts = key.strip().split(".")
    for i, part in enumerate(parts[:-1]):
      if not isinstance(node.get(part), dict):
        raise ConfigError(f"unknown config key {'.'.join(parts[:i + 1])} in override {item!r}")
      node = node[part]
    if parts[-1] not in node:
      raise ConfigError(f"unknown config key {key} in override {item!r}")
    node[parts[-1]] = value
  return config_from_dict(data)


def _check(condition: bool, message: str) -> None:
  if not condition:
    raise ConfigError(message)


def _check_choice(value: str, choices: Sequence[str], key: str) -> None:
  _check(value in choices, f"{key}={value!r} is not one of {', '.join(choices)}")


def _validate_backbone_and_fpn(m: ModelConfig) -> None:
  _check_choice(m.backbone.type, BACKBONE_TYPES, "model.backbone.type")
  if m.backbone.type == "resnet":
    _check(m.backbone.depth in BACKBONE_DEPTHS,
           f"model.backbone.depth={m.backbone.depth} is not one of {BACKBONE_DEPTHS}")
    _check(not m.backbone.minimalistic,
           "model.backbone.minimalistic applies to MobileNetV3 backbones only")
  else:
    _check(not m.backbone.stride_in_1x1,
           f"model.backbone.stride_in_1x1 applies to ResNets only, not {m.backbone.type}")
    _check(not m.backbone.init_checkpoint.startswith(MODELGARDEN_SCHEME),
           f"model.backbone.init_checkpoint='modelgarden:...' reads Model Garden ResNets only; "
           f"for {m.backbone.type} convert Keras-applications weights with "
           "python -m retinanet.modeling.imagenet_weights")
  _check(3 <= m.fpn.min_level <= 5,
         "model.fpn.min_level must be 3..5 (the backbone returns C3..C5)")
  _check(m.backbone.width_multiplier > 0, "model.backbone.width_multiplier must be > 0")
  _check(m.fpn.min_level <= m.fpn.max_level <= 8, "model.fpn.max_level must be in min_level..8")
  _check_choice(m.fpn.p6_source, P6_SOURCES, "model.fpn.p6_source")
  stride = 2 ** m.fpn.max_level
  for i, side in enumerate(m.input_size):
    _check(side > 0 and side % stride == 0,
           f"model.input_size[{i}]={side} must be a positive multiple of 2**max_level={stride}")


def _validate_heads_anchors_matcher(m: ModelConfig) -> None:
  _check(m.fpn.num_channels > 0 and m.head.num_channels > 0, "channel counts must be positive")
  _check(0.0 < m.head.prior_probability < 1.0, "model.head.prior_probability must be in (0, 1)")
  _check(m.anchors.scales_per_octave >= 1, "model.anchors.scales_per_octave must be >= 1")
  _check(len(m.anchors.aspect_ratios) >= 1 and all(r > 0 for r in m.anchors.aspect_ratios),
         "model.anchors.aspect_ratios must be a non-empty list of positive numbers")
  _check(0.0 < m.matcher.negative_iou <= m.matcher.positive_iou <= 1.0,
         "model.matcher needs 0 < negative_iou <= positive_iou <= 1")
  _check(all(v > 0 for v in m.box_variances), "model.box_variances must be positive")
  _check(0.0 < m.matcher.crowd_ioa <= 1.0, "model.matcher.crowd_ioa must be in (0, 1]")
  _check_choice(m.matcher.low_quality_rule, LOW_QUALITY_RULES, "model.matcher.low_quality_rule")
  _check_choice(m.padding, PADDINGS, "model.padding")
  for section, norms in (("model.fpn", m.fpn), ("model.head", m.head)):
    _check(not (norms.use_batch_norm and norms.use_group_norm),
           f"{section}: use_batch_norm and use_group_norm are exclusive; pick one")
  if m.fpn.use_group_norm or m.head.use_group_norm:
    groups = m.norm.group_norm_groups
    for key, channels in (("model.fpn.num_channels", m.fpn.num_channels),
                          ("model.head.num_channels", m.head.num_channels)):
      _check(groups >= 1 and channels % groups == 0,
             f"{key}={channels} must be a multiple of model.norm.group_norm_groups={groups}")


def _validate_loss_and_input(config: ExperimentConfig) -> None:
  m = config.model
  l = config.loss
  _check(0.0 <= l.focal_alpha <= 1.0, "loss.focal_alpha must be in [0, 1]")
  _check(l.focal_gamma >= 0.0, "loss.focal_gamma must be >= 0")
  _check(l.huber_delta > 0.0, "loss.huber_delta must be > 0")
  _check(l.box_loss_weight > 0.0, "loss.box_loss_weight must be > 0")
  _check_choice(l.box_loss, BOX_LOSSES, "loss.box_loss")
  check_box_loss_convention(m.box_variances, l.box_loss, l.huber_delta, l.box_loss_weight)
  _check(0.0 <= l.normalizer_momentum < 1.0, "loss.normalizer_momentum must be in [0, 1)")
  _check(l.positives_offset >= 0.0, "loss.positives_offset must be >= 0")
  i = config.input
  _check(0.0 < i.scale_min <= i.scale_max, "input needs 0 < scale_min <= scale_max")
  _check(i.max_instances >= 1, "input.max_instances must be >= 1")


def _validate_optimizer_and_train(config: ExperimentConfig) -> None:
  o = config.optimizer
  _check_choice(o.type, OPTIMIZERS, "optimizer.type")
  _check(o.weight_decay >= 0.0, "optimizer.weight_decay must be >= 0")
  _check(o.type == "adamw" or o.weight_decay == 0.0,
         "optimizer.weight_decay is AdamW's decoupled decay; with optimizer.type='sgd' set "
         "loss.l2_weight_decay instead")
  _check_choice(o.schedule, LR_SCHEDULES, "optimizer.schedule")
  _check(len(o.boundaries) == len(o.decay_rates),
         "optimizer.boundaries and optimizer.decay_rates must have the same length")
  _check(list(o.boundaries) == sorted(o.boundaries), "optimizer.boundaries must be increasing")
  _check(0 <= o.ema_decay < 1.0, "optimizer.ema_decay must be in [0, 1)")
  t = config.train
  _check(t.global_batch_size >= 1 and t.total_steps >= 1, "train batch size and steps must be >= 1")
  _check(t.steps_per_execution >= 1, "train.steps_per_execution must be >= 1")
  _check(t.checkpoint_every >= 1 and t.log_every >= 1,
         "train.checkpoint_every and train.log_every must be >= 1")
  _check(o.warmup_steps <= t.total_steps,
         f"optimizer.warmup_steps={o.warmup_steps} must be <= train.total_steps={t.total_steps}: "
         f"also set optimizer.warmup_steps={t.total_steps} or fewer (run_pipeline.py: --set "
         f"optimizer.warmup_steps={t.total_steps})")
  _check_choice(t.mixed_precision, PRECISIONS, "train.mixed_precision")
  _check_choice(t.nan_policy, NAN_POLICIES, "train.nan_policy")
  _check_choice(t.strategy, STRATEGIES, "train.strategy")


def _validate_postprocess_eval_anchor_fit(config: ExperimentConfig) -> None:
  p = config.postprocess
  _check_choice(p.nms_mode, NMS_MODES, "postprocess.nms_mode")
  _check(0.0 <= p.score_threshold < 1.0, "postprocess.score_threshold must be in [0, 1)")
  _check(0.0 < p.iou_threshold <= 1.0, "postprocess.iou_threshold must be in (0, 1]")
  _check(p.soft_nms_sigma > 0.0, "postprocess.soft_nms_sigma must be > 0")
  _check(p.max_detections >= 1 and p.pre_nms_top_k >= 1, "postprocess sizes must be >= 1")
  _check(config.eval.batch_size >= 1, "eval.batch_size must be >= 1")
  _check_choice(config.anchor_fit.policy, ANCHOR_FIT_POLICIES, "anchor_fit.policy")
  _check_choice(config.eval.coco_backend, COCO_BACKENDS, "eval.coco_backend")
  _check(0.0 <= config.anchor_fit.min_coverage <= 1.0, "anchor_fit.min_coverage must be in [0, 1]")


def validate(config: ExperimentConfig) -> None:
  """Cross-field checks; raises ConfigError naming the key to fix."""
  _check(config.model.num_classes >= 1, "model.num_classes must be >= 1")
  _validate_backbone_and_fpn(config.model)
  _validate_heads_anchors_matcher(config.model)
  _validate_loss_and_input(config)
  _validate_optimizer_and_train(config)
  _validate_postprocess_eval_anchor_fit(config)


def effective_huber_settings(box_variances: Sequence[float], huber_delta: float,
                             box_loss_weight: float) -> List[Tuple[float, float]]:
  """Per coordinate (dy, dx, dh, dw): the (Huber delta, box weight) in unscaled-delta units.

  Targets are t = d / v for raw deltas d, and huber(t - p; delta) with t, p
  scaled by 1 / v equals huber(d - q; delta * v) / v**2. So the loss bends at
  delta * v anchor units and weighs w / v**2 on the unscaled scale.
  """
  return [(huber_delta * v, box_loss_weight / (v * v)) for v in box_variances]


def check_box_loss_convention(box_variances: Sequence[float], box_loss: str, huber_delta: float,
                              box_loss_weight: float) -> None:
  """Rejects box coder / box loss settings tuned for different target scales.

  With box_loss="huber", the effective Huber bend and weight of every
  coordinate (`effective_huber_settings`) must lie in
  EFFECTIVE_HUBER_DELTA_RANGE / EFFECTIVE_BOX_WEIGHT_RANGE around Model
  Garden's (0.1, 50). Mixing Model Garden's delta 0.1 and weight 50 with the
  scaled variances (0.1, 0.1, 0.2, 0.2) bends at 1-2% of the anchor size (the
  loss is almost pure L1) and weighs the box term 25-100x. GIoU is scale-free:
  only its weight is checked.
  """
  if box_loss == "giou":
    low, high = GIOU_BOX_LOSS_WEIGHT_RANGE
    _check(low <= box_loss_weight <= high,
           f"loss.box_loss_weight={box_loss_weight:g} with loss.box_loss='giou': GIoU loss is in "
           f"[0, 2] per positive anchor, so weigh it {low:g}..{high:g} (torchvision: 1)")
    return
  (d_low, d_high), (w_low, w_high) = EFFECTIVE_HUBER_DELTA_RANGE, EFFECTIVE_BOX_WEIGHT_RANGE
  effective = effective_huber_settings(box_variances, huber_delta, box_loss_weight)
  bad = [(name, d, w) for name, (d, w) in zip(("dy", "dx", "dh", "dw"), effective)
         if not (d_low <= d <= d_high and w_low <= w <= w_high)]
  if bad:
    shown = "; ".join(f"{name}: Huber bend {d:.3g} anchor units, weight {w:.4g}"
                      for name, d, w in bad)
    raise ConfigError(
        f"model.box_variances={tuple(box_variances)} with loss.huber_delta={huber_delta:g} and "
        f"loss.box_loss_weight={box_loss_weight:g} mix two box-loss conventions ({shown}; "
        f"accepted: bend {d_low:g}..{d_high:g}, weight {w_low:g}..{w_high:g}). Use unscaled "
        f"deltas, box_variances=[1, 1, 1, 1] with huber_delta={REFERENCE_HUBER_DELTA:g} and "
        f"box_loss_weight={REFERENCE_BOX_LOSS_WEIGHT:g} (Model Garden), or the scaled "
        f"variant box_variances={list(SCALED_BOX_VARIANCES)} with "
        f"huber_delta={SCALED_HUBER_DELTA} and box_loss_weight={SCALED_BOX_LOSS_WEIGHT} "
        "(the ancestor project / keras.io RetinaNet; sample/tiny)")


def check_num_classes(config: ExperimentConfig, label_map_size: int) -> None:
  """The model must have exactly one class output per label-map entry."""
  if config.model.num_classes != label_map_size:
    raise ConfigError(
        f"model.num_classes={config.model.num_classes} but the label map has {label_map_size} "
        f"classes: set model.num_classes={label_map_size} (or use the label map of the data)")


def with_total_steps(config: ExperimentConfig, steps: int) -> ExperimentConfig:
  """The config trained for `steps` steps with its schedule scaled to them: warm-up and
  decay boundaries keep their fraction of the training (a warm start's continuation)."""
  _check(steps >= 1, f"continue steps must be >= 1, got {steps}")
  scale = steps / config.train.total_steps
  o = config.optimizer
  boundaries = tuple(min(max(round(b * scale), 1), steps) for b in o.boundaries)
  optimizer = dataclasses.replace(o, warmup_steps=min(round(o.warmup_steps * scale), steps),
                                  boundaries=boundaries)
  train = dataclasses.replace(config.train, total_steps=steps,
                              checkpoint_every=min(config.train.checkpoint_every, steps),
                              log_every=min(config.train.log_every, steps))
  result = dataclasses.replace(config, optimizer=optimizer, train=train)
  validate(result)
  return result
