"""The blessing rule: when an evaluated model may replace the served one.

A model is blessed when its AP (IoU 0.50:0.95) reaches `min_ap` and, if a model
was blessed before, is not worse than that model's AP (same split, same
post-processing) by more than `max_ap_regression`. The defaults here are the
only ones: the CLI, `create_pipeline` and the Evaluator component take them.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence


@dataclasses.dataclass(frozen=True)
class BlessingThresholds:
  min_ap: float = 0.3
  max_ap_regression: float = 0.01


# Continuous training: the held-out AP drop of one class that counts as forgetting it
# (per-class AP on a few dozen images moves by ~0.05 between two good models).
DEFAULT_MAX_CLASS_REGRESSION = 0.1


DEFAULT_THRESHOLDS = BlessingThresholds()


def decide_blessing(ap: float, min_ap: float, baseline_ap: Optional[float],
                    max_ap_regression: float) -> Dict[str, Any]:
  """Pure blessing rule; returns {'blessed': bool, 'reason': str}."""
  if ap < min_ap:
    return {"blessed": False, "reason": f"AP {ap:.4f} is below the threshold {min_ap:.4f}"}
  if baseline_ap is not None and ap < baseline_ap - max_ap_regression:
    return {"blessed": False,
            "reason": (f"AP {ap:.4f} is worse than the last blessed model's {baseline_ap:.4f} "
                       f"by more than {max_ap_regression:.4f}")}
  why = f"AP {ap:.4f} >= threshold {min_ap:.4f}"
  if baseline_ap is not None:
    why += f" and within {max_ap_regression:.4f} of the last blessed model's {baseline_ap:.4f}"
  return {"blessed": True, "reason": why}


def forgotten_classes(per_class: Sequence[Mapping[str, Any]],
                      baseline_per_class: Sequence[Mapping[str, Any]],
                      max_class_regression: float) -> List[Dict[str, Any]]:
  """Classes whose held-out AP fell by more than `max_class_regression` from the baseline's
  (entries as coco_metrics' per-class AP: category_id, name, AP or None, num_ground_truth).
  A class with ground truth but no valid AP for the model (no detection) counts as 0."""
  model_ap = {c["category_id"]: c["AP"] for c in per_class}
  forgotten = []
  for base in baseline_per_class:
    if base["AP"] is None or not base.get("num_ground_truth"):
      continue
    ap = model_ap.get(base["category_id"]) or 0.0
    if ap < base["AP"] - max_class_regression:
      forgotten.append({"category_id": base["category_id"], "name": base["name"],
                        "AP": ap, "was": base["AP"]})
  return forgotten


def decide_with_held_out(decision: Dict[str, Any], held_out_ap: Optional[float],
                         baseline_held_out_ap: Optional[float],
                         max_held_out_regression: float,
                         forgotten: Sequence[Mapping[str, Any]] = ()) -> Dict[str, Any]:
  """Continuous training's second gate: no forgetting on the fixed held-out set (the first
  span's val split). Refuses a model whose held-out AP is worse than the baseline's by more
  than `max_held_out_regression`, or that forgot a class (`forgotten_classes`: a class that
  is no longer labelled can vanish while the others improve the mean); keeps `decision`
  otherwise (with the numbers added)."""
  if held_out_ap is None or baseline_held_out_ap is None or not decision["blessed"]:
    return decision
  if held_out_ap < baseline_held_out_ap - max_held_out_regression:
    return {"blessed": False,
            "reason": (f"held-out AP {held_out_ap:.4f} is worse than the last blessed model's "
                       f"{baseline_held_out_ap:.4f} by more than {max_held_out_regression:.4f} "
                       f"(forgetting)")}
  if forgotten:
    classes = ", ".join(f"{c['name']} {c['AP']:.4f} (was {c['was']:.4f})"
                        for c in forgotten)
    return {"blessed": False,
            "reason": f"held-out AP per class fell beyond the threshold for {classes} "
                      f"(forgetting)"}
  return {"blessed": True,
          "reason": (f"{decision['reason']}; held-out AP {held_out_ap:.4f} within "
                     f"{max_held_out_regression:.4f} of the last blessed model's "
                     f"{baseline_held_out_ap:.4f}")}
