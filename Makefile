# Two entry points: `make demo` (the main job on a small default) and `make test`.
# Both install what they need (system Vulkan driver, .venv, CPU torch, the package) idempotently.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= runs/demo

.PHONY: setup demo test test-slow bench lint clean mutate-success

setup:
	@bash scripts/setup.sh

# The suite's question on ShellGame: a single-frame DP and a GRU memory over its frozen encoder,
# one core each; a rerun reuses what is done. Then the table, page and plots of the two results.
demo: setup
	$(BIN)/aem-bench sweep --protocol demo --rows singleframe-dp gru-dp --workers 2 \
		--cache $(DEMO_DIR)/cache --results-dir $(DEMO_DIR)/results --video $(DEMO_DIR)/videos
	$(BIN)/aem-bench leaderboard --results $(DEMO_DIR)/results --out $(DEMO_DIR)/LEADERBOARD.md
	@echo "open $(DEMO_DIR)/index.html (the page), $(DEMO_DIR)/LEADERBOARD.md, $(DEMO_DIR)/videos/"

test: setup
	$(BIN)/python -m pytest -q

# Only the tests marked @pytest.mark.slow (training, multi-process and long evaluations).
test-slow: setup
	$(BIN)/python -m pytest -q -m slow

bench: setup
	$(BIN)/python benchmarks/report.py
	$(BIN)/python benchmarks/policy_latency.py
	$(BIN)/python benchmarks/scan_training.py

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf runs .pytest_cache

# Not part of CI: removes each clause of each task's success check in turn and lists the
# mutants the near-miss tests (tests/test_success_clauses.py) let through. A few minutes.
mutate-success: setup
	$(BIN)/python scripts/mutate_success.py
