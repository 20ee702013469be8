"""The Evaluator's blessing rule and its one set of defaults."""
import pytest

from retinanet.evaluation.blessing import DEFAULT_THRESHOLDS, decide_blessing


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


def test_one_set_of_default_thresholds():
  """The CLI, create_pipeline and the Evaluator component default to the same thresholds."""
  import inspect  # pylint: disable=g-import-not-at-top
  from components.evaluator import RetinaNetEvaluator  # pylint: disable=g-import-not-at-top
  from pipeline import cli  # pylint: disable=g-import-not-at-top
  args = cli.build_parser().parse_args([])
  assert (args.min_ap, args.max_ap_regression) == (DEFAULT_THRESHOLDS.min_ap,
                                                   DEFAULT_THRESHOLDS.max_ap_regression)
  # The component runs its function with that function's defaults when the pipeline passes none.
  function = RetinaNetEvaluator.EXECUTOR_SPEC.executor_class._FUNCTION  # pylint: disable=protected-access
  signature = inspect.signature(function)
  for name in ("min_ap", "max_ap_regression"):
    assert name in RetinaNetEvaluator.SPEC_CLASS.PARAMETERS
    assert signature.parameters[name].default == getattr(DEFAULT_THRESHOLDS, name)


def test_held_out_gate_refuses_forgetting_by_hand():
  from retinanet.evaluation.blessing import decide_with_held_out
  blessed = decide_blessing(0.5, 0.3, 0.49, 0.01)
  kept = decide_with_held_out(blessed, 0.40, 0.405, 0.01)
  assert kept["blessed"] and "held-out AP 0.4000" in kept["reason"]
  refused = decide_with_held_out(blessed, 0.30, 0.40, 0.01)
  assert not refused["blessed"] and "forgetting" in refused["reason"]
  # No baseline yet, or already refused: the first decision stands.
  assert decide_with_held_out(blessed, 0.1, None, 0.01) == blessed
  not_blessed = decide_blessing(0.1, 0.3, None, 0.01)
  assert decide_with_held_out(not_blessed, 0.5, 0.1, 0.01) == not_blessed


def test_a_forgotten_class_refuses_even_when_the_mean_improves():
  from retinanet.evaluation.blessing import decide_with_held_out, forgotten_classes
  def entry(category_id, ap, gt=10):
    return {"category_id": category_id, "name": f"c{category_id}", "AP": ap,
            "num_ground_truth": gt}
  baseline = [entry(1, 0.18), entry(2, 0.32), entry(3, 0.10), entry(4, None, gt=0)]
  model = [entry(1, 0.40), entry(2, None), entry(3, 0.05), entry(4, None, gt=0)]
  # Class 2 has ground truth but no valid AP (no detection): 0, a drop of 0.32 > 0.1;
  # class 3 fell by 0.05 (within 0.1); class 4 has no ground truth.
  forgotten = forgotten_classes(model, baseline, 0.1)
  assert forgotten == [{"category_id": 2, "name": "c2", "AP": 0.0, "was": 0.32}]
  decision = decide_with_held_out(decide_blessing(0.5, 0.3, 0.49, 0.01), 0.19, 0.18, 0.01,
                                  forgotten)
  assert not decision["blessed"] and "c2 0.0000 (was 0.3200)" in decision["reason"]
  assert forgotten_classes(model, baseline, 0.35) == []
