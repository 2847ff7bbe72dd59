# The two commands of the README. Both do the whole set-up first (idempotent, skips what is present).
.PHONY: setup demo test bench

setup:
	bash scripts/setup.sh

demo: setup
	wakeword demo --out work/demo

test: setup
	HF_HUB_OFFLINE=1 python3 -m pytest -q

# Speed and memory benchmarks (docs/benchmarks.json and the generated part of docs/BENCHMARKS.md); not part of the tests.
bench: setup
	python3 benchmarks/run_benchmarks.py
