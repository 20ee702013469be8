"""The blessing rule: when an evaluated model may replace the served one.

A model is blessed when its AP (IoU 0.50:0.95) reaches `min_ap` and, if a model
was blessed before, is not worse than that model's AP (same split, same
post-processing) by more than `max_ap_regression`. The defaults here are the
only ones: the CLI, `create_pipeline` and the Evaluator component take them.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional


@dataclasses.dataclass(frozen=True)
class BlessingThresholds:
  min_ap: float = 0.3
  max_ap_regression: float = 0.01


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


def decide_with_held_out(decision: Dict[str, Any], held_out_ap: Optional[float],
                         baseline_held_out_ap: Optional[float],
                         max_held_out_regression: float) -> Dict[str, Any]:
  """Continuous training's second gate: no forgetting on the fixed held-out set (the first
  span's val split). Refuses a model whose held-out AP is worse than the baseline's by more
  than `max_held_out_regression`; keeps `decision` otherwise (with the numbers added)."""
  if held_out_ap is None or baseline_held_out_ap is None or not decision["blessed"]:
    return decision
  if held_out_ap < baseline_held_out_ap - max_held_out_regression:
    return {"blessed": False,
            "reason": (f"held-out AP {held_out_ap:.4f} is worse than the last blessed model's "
                       f"{baseline_held_out_ap:.4f} by more than {max_held_out_regression:.4f} "
                       f"(forgetting)")}
  return {"blessed": True,
          "reason": (f"{decision['reason']}; held-out AP {held_out_ap:.4f} within "
                     f"{max_held_out_regression:.4f} of the last blessed model's "
                     f"{baseline_held_out_ap:.4f}")}
