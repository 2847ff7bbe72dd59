# The two commands of the README. Both do the whole set-up first (idempotent, skips what is present).
.PHONY: setup demo test bench

setup:
	bash scripts/setup.sh

demo: setup
	wakeword demo --out work/demo

test: setup
	HF_HUB_OFFLINE=1 python3 -m pytest -q

bench: setup
	bash benchmarks/run_all.sh
