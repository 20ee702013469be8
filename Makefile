# The two set-up commands of README.md. Both create .venv/ from the lock file when missing.
PY := .venv/bin/python
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

# Two xdist workers, a whole test module at a time, in tests/conftest.py's order.
XDIST := -n 2 --dist loadscope --no-loadscope-reorder

.PHONY: env browser run test test-fast test-e2e bench demo-continuous

env:
	@scripts/bootstrap.sh

# Headless Chromium + fonts for the evaluation report's browser test (apt, when root).
browser:
	@scripts/install_browser.sh

# The main job: the local pipeline on the built-in sample data.
run: env
	$(PY) run_pipeline.py --runner=local $(ARGS)

# The BENCHMARKS.md sections that fit in an hour on 2 cores (benchmarks/run_all.py).
bench: env
	$(PY) benchmarks/run_all.py $(ARGS)

# Continuous training on three generated data drops (scripts/continuous_demo.sh).
demo-continuous: env
	scripts/continuous_demo.sh $(ARGS)

# The whole test suite (CI runs this through .ci/run).
test: env browser
	$(PY) -m pytest tests $(XDIST) $(PYTEST_ARGS)

# Everything but the end-to-end pipeline runs.
test-fast: env browser
	$(PY) -m pytest tests -m "not e2e" $(XDIST) $(PYTEST_ARGS)

# Only the end-to-end pipeline runs.
test-e2e: env
	$(PY) -m pytest tests -m e2e $(XDIST) $(PYTEST_ARGS)
