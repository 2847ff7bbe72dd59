#!/usr/bin/env bash
# The ESPHome (microWakeWord) export's converter in its own virtual environment, .venv-tflite (or $WAKEWORD_TFLITE_VENV):
# TensorFlow's TFLite converter builds the int8 streaming .tflite (state in resource variables, as microWakeWord's
# models) and TFLite Micro's interpreter measures its tensor arena. `wakeword export --format microwakeword` runs them
# there as a subprocess (src/wakeword/mww_tflite.py), so the project's environment never imports TensorFlow and keeps
# its own package versions (torch 2.13.0 CPU among them). tensorflow-cpu pulls no CUDA. Idempotent; scripts/setup.sh
# calls it (docs/ESPHOME.md, docs/BENCHMARKS.md "TFLite toolchain").
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=${WAKEWORD_TFLITE_VENV:-.venv-tflite}
TF=tensorflow-cpu==2.21.0
TFLM=tflite-micro==0.dev20261023182759

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import tensorflow, tflite_micro" >/dev/null 2>&1; then
  echo "[setup-tflite] $VENV ready"
  exit 0
fi
echo "[setup-tflite] creating $VENV with $TF and $TFLM (about 1.3 GB)"
"$PY" -m venv "$VENV"
# numpy pinned like the project's (constraints.txt); nothing else of the project goes in
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt "$TF" "$TFLM"
"$VENV/bin/python" - <<'PYEOF'
import tensorflow as tf
assert not tf.config.list_physical_devices("GPU"), "expected the CPU build of TensorFlow"
print(f"[setup-tflite] tensorflow {tf.__version__} (CPU build)")
PYEOF
