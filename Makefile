# The two commands of the README. Both do the whole set-up first (idempotent, skips what is present).
# `make test` is what CI runs (.ci/run): lint, type check, then every test (the slow ones too).
.PHONY: setup demo test lint bench

setup:
	bash scripts/setup.sh

# The demo sets up what it needs only: no TensorFlow converter (ESPHome export) and no browser (UI test); ~3 min
# less on a fresh machine (docs/BENCHMARKS.md, "Demo wall time").
demo:
	WAKEWORD_SKIP_TFLITE=1 WAKEWORD_SKIP_BROWSER=1 bash scripts/setup.sh
	wakeword demo --out work/demo

test: setup lint
	HF_HUB_OFFLINE=1 python3 -m pytest -q

# ruff with the rules pinned in pyproject.toml; mypy on src/ (its configuration is in pyproject.toml too)
lint:
	python3 -m ruff check
	python3 -m mypy

# Speed and memory benchmarks (docs/benchmarks.json and the generated part of docs/BENCHMARKS.md); not part of the tests.
bench: setup
	python3 benchmarks/run_benchmarks.py
