"""Anchor fit math: exact best-anchor IoU, coverage, suggestion, and the Trainer's policy."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from retinanet import config as config_lib
from retinanet import factory
from retinanet.dataloader import preprocess_ops
from retinanet.ops import anchor_fit, box_ops
from retinanet.training.anchor_policy import AnchorCoverageError, apply_anchor_fit
from retinanet.ops.anchors import Anchors

# One level (stride 8), one 8x8 anchor per cell: centres at 4, 12, ..., 60.
ONE_SHAPE = Anchors((64, 64), 3, 3, anchor_size=1.0, scales_per_octave=1, aspect_ratios=(1.0,))


def test_best_anchor_iou_hand_computed():
  boxes = np.array([
      [0, 0, 8, 8],     # on the anchor at (4, 4): IoU 1
      [2, 2, 10, 10],   # centre (6, 6) -> anchor [0, 0, 8, 8]: 36 / (64 + 64 - 36)
      [0, 0, 16, 16],   # centre (8, 8) -> anchor [8, 8, 16, 16]: 64 / 256
      [0, 0, 4, 16],    # centre (2, 8) -> anchor [0, 8, 8, 16]: 4 * 8 / (64 + 64 - 32)
  ], np.float32)
  iou = anchor_fit.best_anchor_iou(boxes, ONE_SHAPE).numpy()
  np.testing.assert_allclose(iou, [1.0, 36 / 92, 0.25, 1 / 3], rtol=1e-6)
  c = anchor_fit.coverage(iou, positive_iou=0.5, negative_iou=0.4)
  assert (c.num_boxes, c.positive, c.ignored_only, c.background) == (4, 0.25, 0.0, 0.75)
  assert c.no_positive == 0.75
  c = anchor_fit.coverage(iou, positive_iou=0.5, negative_iou=0.3)
  assert (c.positive, c.ignored_only, c.background) == (0.25, 0.5, 0.25)


@pytest.mark.parametrize("layout", [
    Anchors((192, 160), 3, 6, 4.0, 3, (0.5, 1.0, 2.0)),
    Anchors((128, 128), 3, 5, 2.5, 2, (0.25, 1.0, 3.0)),
])
def test_best_anchor_iou_equals_brute_force_over_all_anchors(layout):
  rng = np.random.default_rng(0)
  centres = rng.uniform(-10, 200, (400, 2))
  sizes = np.exp(rng.uniform(np.log(2), np.log(300), (400, 2)))
  boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], 1).astype(np.float32)
  brute = box_ops.pairwise_iou_yxyx(tf.constant(boxes), layout.boxes()).numpy().max(axis=1)
  np.testing.assert_allclose(anchor_fit.best_anchor_iou(boxes, layout).numpy(), brute,
                             atol=1e-6)


@pytest.mark.parametrize("hw", [(480, 640), (640, 480), (333, 1000), (100, 100)])
def test_input_scale_is_the_evaluation_resize(hw):
  geometry = preprocess_ops.resize_crop_geometry(tf.constant(hw, tf.float32), (192, 192))
  np.testing.assert_allclose(anchor_fit.input_scale(tf.constant([hw]), (192, 192)).numpy()[0],
                             geometry.image_scale.numpy(), rtol=1e-6)


def _boxes(rng, n, sides, ratios, image=192):
  """n boxes of sqrt-area in `sides` (px) and aspect ratio (w/h) drawn from `ratios`."""
  size = np.exp(rng.uniform(np.log(sides[0]), np.log(sides[1]), n))
  ratio = rng.choice(ratios, n)
  w, h = size * np.sqrt(ratio), size / np.sqrt(ratio)
  cy, cx = rng.uniform(h / 2, image - h / 2), rng.uniform(w / 2, image - w / 2)
  return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], 1)


SAMPLE_LAYOUT = Anchors((192, 192), 3, 6, 4.0, 3, (0.5, 1.0, 2.0))


@pytest.mark.parametrize("kind, sides, ratios", [
    ("elongated", (20, 80), (0.2, 5.0)),
    ("small", (14, 24), (0.8, 1.0, 1.25)),
])
def test_poor_coverage_gets_a_suggestion_that_fixes_it(kind, sides, ratios):
  boxes = _boxes(np.random.default_rng(1), 3000, sides, ratios)
  s = anchor_fit.suggest_layout(boxes, SAMPLE_LAYOUT, 0.5, 0.4)
  assert s.current.positive < 0.2, kind
  assert s.coverage.positive >= 0.9, (kind, s)
  assert (s.scales_per_octave, len(s.aspect_ratios)) == (3, 3)  # same model size
  # The reported coverage is the suggestion's real coverage on those boxes.
  again = anchor_fit.coverage(anchor_fit.best_anchor_iou(boxes, s.anchors(SAMPLE_LAYOUT)).numpy(),
                              0.5, 0.4)
  assert again == s.coverage


def test_good_coverage_keeps_the_layout_when_nothing_is_better():
  # Exactly two of the 32 px level-3 anchors (centres (i + 0.5) * 8).
  boxes = np.array([[4, 4, 36, 36], [60, 60, 92, 92]], np.float64)
  s = anchor_fit.suggest_layout(boxes, SAMPLE_LAYOUT, 0.5, 0.4)
  assert s.coverage.positive == 1.0 and s.coverage == s.current
  assert s.anchors(SAMPLE_LAYOUT) == SAMPLE_LAYOUT


def test_kmeans_ratios_find_the_modes():
  rng = np.random.default_rng(0)
  ratios = np.concatenate([np.full(500, 0.25), np.full(500, 4.0)]) * np.exp(
      rng.normal(0, 0.05, 1000))
  assert anchor_fit.kmeans_log_ratios(ratios, np.ones(1000), 2) == pytest.approx((0.25, 4.0),
                                                                                 rel=0.02)


# --- The Trainer's policy ---

def _config(policy):
  config = config_lib.ExperimentConfig()
  config = config_lib.apply_overrides(config, ["model.input_size=[192, 192]",
                                               "model.fpn.max_level=6",
                                               f"anchor_fit.policy={policy}"])
  return config


def _report(config, coverage, suggested_coverage=0.95):
  layout = factory.build_anchors(config.model).layout_json()
  return {
      "anchors": layout, "matcher": {"positive_iou": 0.5, "negative_iou": 0.4},
      "coverage": coverage, "min_coverage": config.anchor_fit.min_coverage,
      "coverage_ok": coverage >= config.anchor_fit.min_coverage,
      "splits": {"train": {"num_boxes": 100, "coverage": {
          "positive": coverage, "ignored_only": 1 - coverage, "background": 0.0}}},
      "suggestion": {**layout, "anchor_size": 2.5, "aspect_ratios": [0.2, 1.0, 5.0],
                     "sample_boxes": 100, "changes_layout": True,
                     "coverage_on_sample": {"positive": suggested_coverage},
                     "current_coverage_on_sample": {"positive": coverage}},
  }


def test_policy_log_trains_as_configured_and_says_so():
  config = _config("log")
  result = apply_anchor_fit(config, _report(config, 0.3), "stats/1")
  assert result.model == config.model
  assert "30.0% < floor 90%" in result.anchor_fit.decision
  ok = apply_anchor_fit(config, _report(config, 0.97), "stats/1")
  assert ok.model == config.model and ok.anchor_fit.decision.startswith("coverage 97.0% >=")


def test_policy_fail_stops_before_training():
  config = _config("fail")
  with pytest.raises(AnchorCoverageError, match=r"30\.0% .*anchor_fit.policy=fail"):
    apply_anchor_fit(config, _report(config, 0.3), "stats/1")
  assert apply_anchor_fit(config, _report(config, 0.95)).model == config.model


def test_policy_adopt_trains_with_the_suggestion_and_records_it():
  config = _config("adopt")
  result = apply_anchor_fit(config, _report(config, 0.3), "stats/1")
  assert result.model.anchors.anchor_size == 2.5
  assert result.model.anchors.aspect_ratios == (0.2, 1.0, 5.0)
  assert "adopted the suggested anchors" in result.anchor_fit.decision
  assert "30.0% -> 95.0%" in result.anchor_fit.decision and "stats/1" in result.anchor_fit.decision
  # The decision travels with the config saved next to the model.
  again = config_lib.config_from_dict(config_lib.config_to_dict(result))
  assert again.anchor_fit.decision == result.anchor_fit.decision
  assert dataclasses.replace(result.model, anchors=config.model.anchors) == config.model


def test_statistics_of_other_anchors_are_not_acted_on():
  config = _config("adopt")
  report = _report(config, 0.3)
  report["anchors"] = {**report["anchors"], "anchor_size": 8.0}
  result = apply_anchor_fit(config, report, "stats/1")
  assert result.model == config.model and "other anchors" in result.anchor_fit.decision
  assert apply_anchor_fit(config, None).anchor_fit.decision.startswith("no dataset statistics")
