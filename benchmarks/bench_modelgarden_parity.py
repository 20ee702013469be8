"""Parity of our RetinaNet targets and losses with TF Model Garden's, on one batch.

    .venv/bin/python benchmarks/bench_modelgarden_parity.py [--venv PATH]

Model Garden (tf-models-official 2.16.0, experiment `retinanet_resnetfpn_coco`,
R50-FPN at 640x640) is a peer that runs in its OWN venv, never a dependency of
this project: on first use the script creates it at --venv (default
.venv-modelgarden in the repository root, not tracked by git) with uv, and runs
benchmarks/modelgarden_side.py there as a subprocess; the two sides exchange
only .npz files in a temporary directory (inputs: image size, ground-truth
boxes and classes, predictions; outputs: anchors, targets, weights, losses,
and Model Garden's config values).

The batch: 3 images of 640x640, two with ground-truth boxes of varied sizes
(12 px to ~460 px, thin, overlapping pairs) and one with no boxes; no crowd
boxes (Model Garden's parser drops them, skip_crowd_during_training, while we
keep them to ignore the anchors on them). The same synthetic predictions (fixed
random class logits and box deltas per anchor, numpy seed --seed) go to both
losses: flat [B, N, K] for us, reshaped to Model Garden's per-level
[B, H, W, A * K] on its side.

Compared: anchors; match state per anchor (positive / negative / ignored);
class and box targets of positive anchors; focal, box (Huber) and total loss.
Our functions are called with explicit arguments equal to Model Garden's
convention (constants below); the table also checks those against the values
read from Model Garden's registered config. Where Model Garden follows another
convention (loss normalizer num_positives + 1), the raw difference and the
difference after the documented correction are both reported.

Prints a markdown report and writes it to bench_out/modelgarden_parity.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from retinanet import losses as losses_lib  # noqa: E402
from retinanet.ops import anchors as anchors_lib  # noqa: E402
from retinanet.ops import box_ops, matcher, target_encoder  # noqa: E402

HEADING = "## Model Garden parity"
DEFAULT_VENV = os.path.join(common.ROOT, ".venv-modelgarden")
DEFAULT_OUT = os.path.join(common.ROOT, "bench_out", "modelgarden_parity.md")
DEFAULT_PYTHON = os.path.expanduser("~/.pyenv/versions/3.10.13/bin/python3.10")
SIDE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "modelgarden_side.py")
MODELGARDEN_PACKAGES = ("tf-models-official==2.16.0", "tensorflow==2.16.2", "tf-keras==2.16.0")

# Our explicit arguments (Model Garden's convention; checked against its config below).
IMAGE_SIZE = (640, 640)
MIN_LEVEL, MAX_LEVEL = 3, 7
ANCHOR_SIZE = 4.0
SCALES_PER_OCTAVE = 3
ASPECT_RATIOS = (0.5, 1.0, 2.0)
NUM_CLASSES = 91  # Model Garden's COCO head: raw category ids 1..90, output 0 never positive.
POSITIVE_IOU = 0.5
NEGATIVE_IOU = 0.5
ALLOW_LOW_QUALITY_MATCHES = True  # Model Garden: BoxMatcher(force_match_for_each_col=True)
VARIANCES = (1.0, 1.0, 1.0, 1.0)  # box_coder_weights None: unscaled deltas
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 1.5
HUBER_DELTA = 0.1
BOX_LOSS_WEIGHT = 50.0

# (our argument name, our value, Model Garden config key, how to read MG's value as ours).
CONFIG_CHECKS = (
    ("image_size", list(IMAGE_SIZE), "input_size", lambda v: list(v[:2])),
    ("min_level", MIN_LEVEL, "min_level", None),
    ("max_level", MAX_LEVEL, "max_level", None),
    ("anchor_size", ANCHOR_SIZE, "anchor_size", None),
    ("scales_per_octave", SCALES_PER_OCTAVE, "num_scales", None),
    ("aspect_ratios", list(ASPECT_RATIOS), "aspect_ratios", list),
    ("num_classes", NUM_CLASSES, "num_classes", None),
    ("positive_iou", POSITIVE_IOU, "match_threshold", None),
    ("negative_iou", NEGATIVE_IOU, "unmatched_threshold", None),
    ("allow_low_quality_matches", ALLOW_LOW_QUALITY_MATCHES, "force_match_for_each_col", None),
    ("variances", list(VARIANCES), "box_coder_weights",
     lambda v: [1.0, 1.0, 1.0, 1.0] if v is None else [1.0 / w for w in v]),
    ("alpha", FOCAL_ALPHA, "focal_loss_alpha", None),
    ("gamma", FOCAL_GAMMA, "focal_loss_gamma", None),
    ("delta", HUBER_DELTA, "huber_loss_delta", None),
    ("box_loss_weight", BOX_LOSS_WEIGHT, "box_loss_weight", float),
)

# yxyx pixels; coordinates are multiples of 1.25 px so that Model Garden's
# normalize (/640) -> denormalize (*640) round trip in its parser is exact.
GT_BOXES: Tuple[Sequence[Sequence[float]], ...] = (
    ((101.25, 203.75, 122.5, 222.5),     # small, ~21 x 19
     (250.0, 300.0, 331.25, 421.25),     # medium, 81 x 121
     (150.0, 100.0, 548.75, 520.0),      # large, ~399 x 420, contains the medium one
     (300.0, 401.25, 460.0, 521.25),     # overlapping pair (rider / horse)
     (340.0, 381.25, 500.0, 601.25),
     (500.0, 30.0, 515.0, 230.0)),       # thin 15 x 200: no anchor reaches IoU 0.5
    ((600.0, 600.0, 612.5, 611.25),      # tiny 12.5 x 11.25, near the corner
     (40.0, 40.0, 140.0, 201.25),        # medium
     (120.0, 60.0, 580.0, 471.25),       # large, 460 x ~411
     (320.0, 480.0, 383.75, 543.75)),    # 64 x 64, on the anchor grid
    (),                                  # no boxes
)
GT_CLASSES: Tuple[Sequence[int], ...] = ((44, 3, 7, 1, 19, 37), (53, 17, 62, 15), ())
STATE_NAMES = {matcher.POSITIVE: "positive", matcher.NEGATIVE: "negative",
               matcher.IGNORED: "ignored"}


def subprocess_env() -> Dict[str, str]:
  """This process's environment minus anything that would point the other venv at ours."""
  env = {k: v for k, v in os.environ.items()
         if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "TF_CPP_MIN_LOG_LEVEL")}
  env.update(common.ENV_DEFAULTS)
  return env


def find_uv() -> str:
  here = os.path.join(os.path.dirname(sys.executable), "uv")
  uv = here if os.path.exists(here) else shutil.which("uv")
  if not uv:
    raise SystemExit("uv not found (expected next to this python or on PATH)")
  return uv


def ensure_venv(venv: str, base_python: str) -> float:
  """Creates / completes the Model Garden venv; returns the seconds it took (0 if ready)."""
  python = os.path.join(venv, "bin", "python")
  probe = ("import importlib.util as u, sys; "
           "sys.exit(0 if all(u.find_spec(m) for m in ('official', 'tensorflow', 'tf_keras')) "
           "else 1)")
  if os.path.exists(python) and subprocess.run([python, "-c", probe],
                                               env=subprocess_env()).returncode == 0:
    return 0.0
  start = time.perf_counter()
  uv = find_uv()
  if not os.path.exists(python):
    print(f"creating the Model Garden venv at {venv} ...", flush=True)
    subprocess.run([uv, "venv", "--python", base_python, venv], check=True,
                   env=subprocess_env())
  print(f"installing {' '.join(MODELGARDEN_PACKAGES)} ...", flush=True)
  subprocess.run([uv, "pip", "install", "--python", python, *MODELGARDEN_PACKAGES],
                 check=True, env=subprocess_env())
  return time.perf_counter() - start


def make_inputs(num_anchors: int, seed: int) -> Dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  batch = len(GT_BOXES)
  arrays = {
      "image_size": np.array(IMAGE_SIZE, np.int32),
      "num_images": np.array(batch, np.int32),
      # Roughly a trained head's range: mostly confident background, some high logits.
      "class_logits": rng.normal(-3.0, 2.0, (batch, num_anchors, NUM_CLASSES)).astype(np.float32),
      # Deltas around the targets' scale: both Huber regimes (|x| <= 0.1 and beyond) occur.
      "box_outputs": rng.normal(0.0, 0.2, (batch, num_anchors, 4)).astype(np.float32),
  }
  for i, (boxes, classes) in enumerate(zip(GT_BOXES, GT_CLASSES)):
    arrays[f"boxes_{i}"] = np.array(boxes, np.float32).reshape(-1, 4)
    arrays[f"classes_{i}"] = np.array(classes, np.int32).reshape(-1)
  return arrays


def run_modelgarden(venv: str, inputs: Dict[str, np.ndarray]) -> Tuple[Dict[str, np.ndarray], float]:
  python = os.path.join(venv, "bin", "python")
  with tempfile.TemporaryDirectory(prefix="mg_parity_") as tmp:
    in_path, out_path = os.path.join(tmp, "inputs.npz"), os.path.join(tmp, "outputs.npz")
    np.savez(in_path, **inputs)
    start = time.perf_counter()
    proc = subprocess.run([python, SIDE_SCRIPT, in_path, out_path], cwd=tmp,
                          env=subprocess_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
      sys.stderr.write(proc.stdout + proc.stderr)
      raise SystemExit(f"Model Garden side failed (exit {proc.returncode})")
    with np.load(out_path) as data:
      return {k: data[k] for k in data.files}, seconds


def our_targets(inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Our anchors [N, 4] and targets [B, N, ...] of the batch (encode_targets per image)."""
  anchors = anchors_lib.generate_anchors(IMAGE_SIZE, MIN_LEVEL, MAX_LEVEL, ANCHOR_SIZE,
                                         SCALES_PER_OCTAVE, ASPECT_RATIOS)
  per_image = []
  for i in range(len(GT_BOXES)):
    boxes = inputs[f"boxes_{i}"]
    per_image.append(target_encoder.encode_targets(
        anchors, boxes, inputs[f"classes_{i}"], np.zeros([len(boxes)], bool),
        positive_iou=POSITIVE_IOU, negative_iou=NEGATIVE_IOU, variances=VARIANCES,
        allow_low_quality_matches=ALLOW_LOW_QUALITY_MATCHES))
  out = {k: np.stack([t[k].numpy() for t in per_image]) for k in per_image[0]}
  out["anchors"] = anchors.numpy()
  return out


def our_losses(inputs: Dict[str, np.ndarray], targets: Dict[str, np.ndarray],
               normalizer=None) -> Dict[str, float]:
  """retinanet_loss with Model Garden's hyper-parameters; normalizer None = ours (max(P, 1))."""
  loss = losses_lib.retinanet_loss(
      inputs["class_logits"], inputs["box_outputs"], targets["class_targets"],
      targets["box_targets"], targets["match_state"], alpha=FOCAL_ALPHA, gamma=FOCAL_GAMMA,
      delta=HUBER_DELTA, box_loss_weight=BOX_LOSS_WEIGHT, normalizer=normalizer)
  return {k: float(v.numpy()) for k, v in loss.items()}


def mg_match_state(theirs: Dict[str, np.ndarray]) -> np.ndarray:
  """Model Garden's per-anchor state from its weights: box_weight 1 = positive, cls_weight 0 = ignored."""
  state = np.full(theirs["cls_weights"].shape, matcher.NEGATIVE, np.int32)
  state[theirs["cls_weights"] == 0] = matcher.IGNORED
  state[theirs["box_weights"] > 0] = matcher.POSITIVE
  return state


def explain_tie_positives(ours: Dict[str, np.ndarray], mg_state: np.ndarray,
                          inputs: Dict[str, np.ndarray]) -> Tuple[np.ndarray, List[str]]:
  """Anchors positive for us only because they tie for a box's best IoU (< positive_iou).

  Our allow_low_quality_matches makes every anchor that ties for a box's best IoU
  positive; Model Garden's force_match_for_each_col takes one tf.argmax per box
  (the lowest anchor index). Returns (mask [B, N] of such anchors, one line per box).
  """
  explained = np.zeros(mg_state.shape, bool)
  lines = []
  for b in range(mg_state.shape[0]):
    boxes = inputs[f"boxes_{b}"]
    if not len(boxes):
      continue
    iou = box_ops.pairwise_iou_yxyx(ours["anchors"], boxes).numpy()  # [N, M]
    best = iou.max(axis=0)
    ours_only = (ours["match_state"][b] == matcher.POSITIVE) & (mg_state[b] == matcher.NEGATIVE)
    for j in range(len(boxes)):
      tied = np.nonzero(iou[:, j] == best[j])[0]
      first = int(tied[0])
      extra = [n for n in tied[1:] if ours_only[n]]
      if not extra or best[j] >= POSITIVE_IOU or mg_state[b, first] != matcher.POSITIVE:
        continue
      explained[b, extra] = True
      h, w = boxes[j, 2] - boxes[j, 0], boxes[j, 3] - boxes[j, 1]
      lines.append(f"image {b} box {j} ({h:g} x {w:g} px): best IoU {best[j]:.4f} < "
                   f"{POSITIVE_IOU} shared by {len(tied)} anchors; MG forces the first "
                   f"(anchor {first}), ours all of them: {len(extra)} extra positive{'s' if len(extra) > 1 else ''}")
  return explained, lines


def apply_mg_tie_rule(ours: Dict[str, np.ndarray], explained: np.ndarray) -> Dict[str, np.ndarray]:
  """Our targets with the explained tie anchors turned NEGATIVE (Model Garden's single argmax)."""
  out = dict(ours)
  out["match_state"] = np.where(explained, matcher.NEGATIVE, ours["match_state"]).astype(np.int32)
  out["class_targets"] = np.where(explained, 0, ours["class_targets"]).astype(np.int32)
  out["box_targets"] = np.where(explained[..., None], 0.0, ours["box_targets"]).astype(np.float32)
  return out


def fmt(x) -> str:
  if isinstance(x, (bool, np.bool_)):
    return str(bool(x))
  if isinstance(x, (int, np.integer)):
    return f"{int(x):,}"
  if isinstance(x, (float, np.floating)):
    return f"{float(x):.7g}" if x != 0 else "0"
  return str(x)


def rel(a: float, b: float) -> float:
  return abs(a - b) / max(abs(a), abs(b), 1e-30)


def anchor_ulps(ours: np.ndarray, theirs: np.ndarray) -> float:
  """Largest anchor difference in float32 ulps of max(|coordinate|, |anchor centre|).

  Model Garden computes centre -/+ half size in float32, so its rounding error
  is an ulp of the centre even where the coordinate itself is small.
  """
  ours = ours.astype(np.float64)
  cy, cx = (ours[:, 0] + ours[:, 2]) / 2, (ours[:, 1] + ours[:, 3]) / 2
  scale = np.maximum(np.abs(ours), np.abs(np.stack([cy, cx, cy, cx], axis=1)))
  return float(np.max(np.abs(ours - theirs) / np.spacing(scale.astype(np.float32))))


def build_report(inputs: Dict[str, np.ndarray], theirs: Dict[str, np.ndarray],
                 timings: Dict[str, float]) -> str:
  cfg = json.loads(str(theirs["config"]))
  rows: List[Tuple[str, ...]] = []  # quantity, ours, theirs, max abs diff, note

  # Config values: ours (explicit arguments) vs Model Garden's registered experiment.
  config_lines, config_diffs = [], 0
  for name, value, key, convert in CONFIG_CHECKS:
    mg_value = cfg[key] if convert is None else convert(cfg[key])
    same = np.allclose(np.asarray(value, float), np.asarray(mg_value, float))
    config_diffs += not same
    config_lines.append(f"`{name}`={value}{'' if same else ' (DIFFERENT)'} / MG `{key}`={cfg[key]}")
  rows.append(("config values (list below)", f"{len(CONFIG_CHECKS)} explicit args",
               f"`{cfg['experiment']}`", f"{config_diffs} differ",
               "all equal" if not config_diffs else "our explicit arguments differ"))

  # Anchors.
  ours = our_targets(inputs)
  n = ours["anchors"].shape[0]
  for key, label in (("anchors", "anchors [N, 4] yxyx (MG parser's AnchorGenerator)"),
                     ("anchors_anchor_class", "anchors (MG `anchor.Anchor`, model side)")):
    d = float(np.max(np.abs(ours["anchors"] - theirs[key])))
    rows.append((label, f"N = {n:,}", f"N = {theirs[key].shape[0]:,}", fmt(d),
                 f"<= {anchor_ulps(ours['anchors'], theirs[key]):.0f} float32 ulp of the anchor centre "
                 "(MG: centre -/+ half size in float32; ours: float64, rounded once); same "
                 "order (level, y, x, scale, ratio)"
                 if d else "identical"))

  # Match state.
  mg_state = mg_match_state(theirs)
  explained, tie_lines = explain_tie_positives(ours, mg_state, inputs)
  tied = apply_mg_tie_rule(ours, explained)
  for state in (matcher.POSITIVE, matcher.NEGATIVE, matcher.IGNORED):
    a, b = int(np.sum(ours["match_state"] == state)), int(np.sum(mg_state == state))
    note = {matcher.POSITIVE: f"all {int(explained.sum())} extra: tied best anchors (below)",
            matcher.NEGATIVE: "the same anchors",
            matcher.IGNORED: "thresholds 0.5 / 0.5: no ignore band"}[state]
    rows.append((f"{STATE_NAMES[state]} anchors (batch)", fmt(a), fmt(b), fmt(abs(a - b)),
                 note if a != b or state == matcher.IGNORED else ""))
  per_image = " ".join(f"{int(np.sum(ours['match_state'][i] == 1))}/{int(np.sum(mg_state[i] == 1))}"
                       for i in range(mg_state.shape[0]))
  raw_diff = int(np.sum(ours["match_state"] != mg_state))
  kinds = []
  for s1 in STATE_NAMES:
    for s2 in STATE_NAMES:
      c = int(np.sum((ours["match_state"] == s1) & (mg_state == s2)))
      if s1 != s2 and c:
        kinds.append(f"{c} ours {STATE_NAMES[s1]} / MG {STATE_NAMES[s2]}")
  rows.append(("anchors whose match state differs", f"positives/image {per_image}", "",
               fmt(raw_diff), "; ".join(kinds) or "none"))
  left = int(np.sum(tied["match_state"] != mg_state))
  rows.append(("... after MG's tie rule (1 forced anchor per box)", "", "", fmt(left),
               "every disagreement explained" if not left else "UNEXPLAINED disagreements"))

  # Targets of anchors positive on both sides.
  both = (ours["match_state"] == matcher.POSITIVE) & (mg_state == matcher.POSITIVE)
  cls_mismatch = int(np.sum(ours["class_targets"][both] != theirs["cls_targets"][both]))
  rows.append(("class targets of common positives (mismatches)", f"{int(both.sum()):,} anchors", "",
               fmt(cls_mismatch), "same raw category ids (1..90) on both sides"))
  mg_neg_cls = sorted(set(np.unique(theirs["cls_targets"][mg_state != matcher.POSITIVE]).tolist()))
  rows.append(("class target of non-positives", "0, masked by match_state", str(mg_neg_cls), "-",
               "MG: one_hot(-1) is an all-zero row; same loss"))
  box_d = float(np.max(np.abs(ours["box_targets"][both] - theirs["box_targets"][both])))
  box_ref = float(np.max(np.abs(theirs["box_targets"][both])))
  rows.append(("box targets of common positives [dy, dx, dh, dw]", f"max abs {box_ref:.4g}", "",
               fmt(box_d), f"rel {box_d / box_ref:.0e}: float32 rounding (MG adds 1e-8 to sizes, "
               "anchors differ by an ulp)"))
  direct_d = float(np.max(np.abs(theirs["direct_box_targets"][both] - theirs["box_targets"][both])))
  direct_c = int(np.sum(theirs["direct_cls_targets"] != theirs["cls_targets"]))
  rows.append(("MG parser vs MG AnchorLabeler on the pixel boxes", "", "",
               f"{fmt(direct_d)} (box), {direct_c} (cls)",
               "parser's normalize / denormalize round trip is exact here"))

  # Losses, three ways: raw; our normalizer replaced by P + 1; also MG's tie rule.
  mg_p = float(np.sum(theirs["box_weights"]))
  our_p = float(np.sum(ours["match_state"] == matcher.POSITIVE))
  tied_p = float(np.sum(tied["match_state"] == matcher.POSITIVE))
  variants = (
      ("raw", our_losses(inputs, ours), f"ours: {int(our_p)} positives, / max(P, 1)"),
      ("normalizer P + 1", our_losses(inputs, ours, our_p + 1.0),
       f"ours: {int(our_p)} positives, / (P + 1) (as MG)"),
      ("P + 1 and MG tie rule", our_losses(inputs, tied, tied_p + 1.0),
       f"ours on {int(tied_p)} positives, / (P + 1): both corrections"),
  )
  rows.append(("loss normalizer", f"max(P, 1) = {fmt(max(our_p, 1.0))}",
               f"P + 1 = {fmt(mg_p + 1.0)}", fmt(abs(max(our_p, 1.0) - (mg_p + 1.0))),
               "MG build_losses: reduce_sum(box_weights) + 1.0"))
  for ours_key, mg_key, label in (("class_loss", "cls_loss", "focal loss"),
                                  ("box_loss", "box_loss", "box loss (Huber)"),
                                  ("total_loss", "total_loss", "total loss")):
    mg = float(theirs[mg_key])
    for name, values, note in variants:
      v = values[ours_key]
      rows.append((f"{label}, {name}", fmt(v), fmt(mg), fmt(abs(v - mg)),
                   f"rel {rel(v, mg):.1e}; {note}"))

  table = ["| quantity | ours | Model Garden | max abs diff | note |",
           "|---|---|---|---|---|"]
  table += ["| " + " | ".join(r) + " |" for r in rows]
  versions = cfg["versions"]
  lines = [
      HEADING, "",
      f"Machine: {common.machine_description()}. Model Garden: tf-models-official "
      f"{versions['tf-models-official']} (tensorflow {versions['tensorflow']}, tf-keras "
      f"{versions['tf-keras']}) in its own venv; ours: tensorflow {tf.__version__}. "
      f"Experiment `{cfg['experiment']}`; a batch of {len(GT_BOXES)} images "
      f"{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} with {', '.join(str(len(b)) for b in GT_BOXES)} boxes "
      f"(no crowd); the same random predictions on both sides (seed {timings['seed']}).",
      "",
      *table, "",
      "Config: " + "; ".join(config_lines) + ".",
      "",
  ]
  if tie_lines:
    lines += ["Match-state differences, by box:", ""] + [f"- {s}" for s in tie_lines] + [""]
  lines += [
      "Notes:",
      "",
      "- MG side: targets from its training parser (`retinanet_input.Parser._parse_train_data`) "
      "with the config's augmentation (hflip, scale jitter 0.8-1.2) off; losses from "
      "`RetinaNetTask.build_losses` (FocalLoss with SUM reduction; tf_keras Huber with SUM, i.e. "
      "the mean over the 4 coordinates summed over anchors; sample weights divided by P + 1 first).",
      "- MG's matcher: `BoxMatcher(thresholds=[0.5, 0.5], indicators=[-1, -2, 1], "
      "force_match_for_each_col=True)`, i.e. no ignore band, and each box's argmax anchor is "
      "forced positive (one per box, the lowest index on ties, matched to that box). Our "
      "allow_low_quality_matches makes all tied best anchors positive, each matched to its own "
      "best box (Detectron2's rule). Ties are common when a box is smaller or thinner than the "
      "anchors containing it.",
      "- Crowd boxes: MG's parser drops them (skip_crowd_during_training=True), so anchors on a "
      "crowd region train as background; ours ignores anchors whose intersection with a crowd box "
      "covers >= matcher.crowd_ioa (0.7) of the anchor (Detectron). This batch has none, so "
      "this does not show above.",
      f"- MG's total loss also adds the model's L2 regularization (l2_weight_decay "
      f"{cfg['l2_weight_decay']}) through `aux_losses`; there is no model here, so both totals "
      "are focal + 50 * box.",
      "- MG's box targets of non-positive anchors encode a zero box (finite, weight 0); ours are "
      "0. Only the targets of anchors positive on both sides are compared.",
      f"- Time: Model Garden venv setup {timings['venv_seconds']:.0f} s (0 = already there), "
      f"Model Garden side {timings['mg_seconds']:.0f} s (interpreter, imports, parser, losses).",
      "",
  ]
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--venv", default=DEFAULT_VENV,
                      help="Model Garden venv (created with uv if missing)")
  parser.add_argument("--python", default=DEFAULT_PYTHON,
                      help="Python 3.10 interpreter the venv is created from")
  parser.add_argument("--out", default=DEFAULT_OUT, help="markdown output file")
  parser.add_argument("--seed", type=int, default=0, help="numpy seed of the predictions")
  args = parser.parse_args()

  venv_seconds = ensure_venv(os.path.abspath(args.venv), args.python)
  num_anchors = sum(anchors_lib.anchors_per_level(IMAGE_SIZE, MIN_LEVEL, MAX_LEVEL,
                                                  SCALES_PER_OCTAVE, ASPECT_RATIOS).values())
  inputs = make_inputs(num_anchors, args.seed)
  theirs, mg_seconds = run_modelgarden(os.path.abspath(args.venv), inputs)
  report = build_report(inputs, theirs, {
      "venv_seconds": venv_seconds, "mg_seconds": mg_seconds, "seed": args.seed})
  print(report)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    f.write(report)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
