"""The Evaluator's blessing rule."""
import pytest

from components.evaluator import decide_blessing


@pytest.mark.parametrize("ap, min_ap, baseline, margin, blessed, reason", [
    (0.50, 0.30, None, 0.01, True, "threshold"),
    (0.29, 0.30, None, 0.01, False, "below the threshold"),
    (0.50, 0.30, 0.505, 0.01, True, "within 0.0100"),
    (0.50, 0.30, 0.52, 0.01, False, "worse than the last blessed"),
    (0.30, 0.30, 0.30, 0.0, True, "threshold"),
])
def test_decide_blessing(ap, min_ap, baseline, margin, blessed, reason):
  decision = decide_blessing(ap, min_ap, baseline, margin)
  assert decision["blessed"] is blessed
  assert reason in decision["reason"]
