# The two commands the README starts with: `make train` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: train test test-slow lint bench clean-venv

$(VENV)/.installed: requirements/lock.txt requirements/dev.txt pyproject.toml sim/pyproject.toml real_robot/pyproject.toml scripts/setup_venv.sh
	bash scripts/setup_venv.sh

# Train the default agent (DrQ-v2) on the built-in default task (builtin/reach).
train: $(VENV)/.installed
	$(VENV)/bin/robotrl-train $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Lint, type-check and run the test suite (slow tests excluded; see `make test-slow`).
test: lint
	$(PY) -m pytest -m "not slow" -n 2 --dist loadgroup --durations=15 $(ARGS)

# Exit code 5 is pytest's "no tests collected": not a failure while no test is marked slow.
test-slow: $(VENV)/.installed
	$(PY) -m pytest -m slow $(ARGS) || [ $$? -eq 5 ]

bench: $(VENV)/.installed
	$(PY) scripts/bench_throughput.py
	$(PY) scripts/bench_replay_memory.py

clean-venv:
	rm -rf $(VENV)
