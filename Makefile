# The two set-up commands of README.md. Both create .venv/ from the lock file when missing.
PY := .venv/bin/python
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: env browser run test test-fast test-slow bench

env:
	@scripts/bootstrap.sh

# Headless Chromium + fonts for the evaluation report's browser test (apt, when root).
browser:
	@scripts/install_browser.sh

# The main job: the local pipeline on the built-in sample data.
run: env
	$(PY) run_pipeline.py --runner=local $(ARGS)

# The whole test suite (CI runs this through .ci/run).
test: env browser
	$(PY) -m pytest tests $(PYTEST_ARGS)

test-fast: env browser
	$(PY) -m pytest tests -m "not slow" $(PYTEST_ARGS)

test-slow: env
	$(PY) -m pytest tests -m slow $(PYTEST_ARGS)
