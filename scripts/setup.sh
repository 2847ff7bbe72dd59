#!/usr/bin/env bash
# One-shot set-up for a fresh machine: system TTS engines, then the Python package.
# Idempotent: skips what is already present. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

need_apt=()
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
command -v flite >/dev/null 2>&1 || need_apt+=(flite)
command -v festival >/dev/null 2>&1 || need_apt+=(festival)
[ -d /usr/share/festival/voices/english/kal_diphone ] || need_apt+=(festvox-kallpc16k)
[ -d /usr/share/festival/voices/english/ked_diphone ] || need_apt+=(festvox-kdlpc16k)
[ -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts ] || need_apt+=(festvox-us-slt-hts)
ldconfig -p 2>/dev/null | grep -q libsndfile || need_apt+=(libsndfile1)
# Real non-English speech as negatives (telephone prompts, 8 kHz). Not the Spanish set (es_MX_f_Allison: the
# speaker of the English prompts in the development recordings) and not the English one (it is in them).
for lang in fr it ru; do
  [ -d /usr/share/asterisk/sounds ] && ls -d /usr/share/asterisk/sounds/${lang}_* >/dev/null 2>&1 \
    || need_apt+=(asterisk-core-sounds-${lang}-wav)
done
# Natural English sentences (quotes, sayings, jokes: 15,991 after filtering) as texts for negative speech
# (data.n_sentences, data.sentence_corpora); without them a build that asks for sentences makes none and says so.
[ -f /usr/share/games/fortunes/literature ] || need_apt+=(fortunes fortunes-min)
# Real recorded voices (English among them) as negatives, for the experiment of configs/ablation_v3_data.yaml only:
# Hedgewars' voice packs, KTuberling's spoken words, KLettres' letters and syllables (~270 MB installed). They made
# real-voice results worse (docs/RESULTS.md, issue #16), so no recipe reads them: WAKEWORD_VOICE_PACKS=1 installs them.
if [ "${WAKEWORD_VOICE_PACKS:-0}" = "1" ]; then
  [ -d /usr/share/games/hedgewars/Data/Sounds/voices ] || need_apt+=(hedgewars-data)
  [ -d /usr/share/ktuberling/sounds ] || need_apt+=(ktuberling-data)
  [ -d /usr/share/klettres ] || need_apt+=(klettres-data)
fi
# Headless Chromium drives the UI's browser test (Playwright's Python package, executable_path=/usr/bin/chromium).
# WAKEWORD_SKIP_BROWSER=1 leaves it out (`make demo` does: the demo needs no browser).
[ "${WAKEWORD_SKIP_BROWSER:-0}" = "1" ] || [ -x /usr/bin/chromium ] || need_apt+=(chromium)

if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    echo "[setup] installing system packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || echo "[setup] apt-get update failed; trying install anyway"
    # One package failing (e.g. a voice missing from the mirror) must not stop the rest.
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null 2>&1 || {
      for p in "${need_apt[@]}"; do
        apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1 || echo "[setup] could not install $p; continuing without it"
      done
    }
  else
    echo "[setup] not root or no apt-get: skipping system packages (${need_apt[*]}); the suite uses whichever TTS engines exist"
  fi
fi

echo "[setup] installing the Python package (with pymicro-wakeword, microWakeWord's runtime, and the dev tools pytest, ruff, mypy: pyproject.toml [dev], pinned in constraints.txt)"
"$PY" -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
# openWakeWord 0.5.1 (the last release that ships pretrained models) is the peer `wakeword bench` compares
# against. Its declared dependencies include tflite-runtime, which has no wheel here; it runs on onnxruntime
# (already installed), so it goes in without its dependency list.
"$PY" -c "import openwakeword" 2>/dev/null || "$PY" -m pip install -q --disable-pip-version-check --no-deps "openwakeword==0.5.1"
# Kokoro-82M's voices (style vectors) ship in the npm package kokoro-js, not on PyPI: unpack them once.
KOKORO_DIR="${WAKEWORD_CACHE:-$HOME/.cache/wakeword}/kokoro"
if [ "$(ls "$KOKORO_DIR"/voices/*.bin 2>/dev/null | wc -l)" -lt 54 ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "[setup] fetching Kokoro voices (npm kokoro-js@1.2.1)"
    tmp=$(mktemp -d)
    if (cd "$tmp" && npm pack -q kokoro-js@1.2.1 >/dev/null 2>&1 && tar xzf kokoro-js-1.2.1.tgz package/voices); then
      mkdir -p "$KOKORO_DIR" && rm -rf "$KOKORO_DIR/voices.tmp" && mv "$tmp/package/voices" "$KOKORO_DIR/voices.tmp" \
        && rm -rf "$KOKORO_DIR/voices" && mv "$KOKORO_DIR/voices.tmp" "$KOKORO_DIR/voices"
    else
      echo "[setup] could not fetch kokoro-js from npm; the data build goes on without Kokoro voices"
    fi
    rm -rf "$tmp"
  else
    echo "[setup] npm not found: the data build goes on without Kokoro voices"
  fi
fi
# Real ambient sound and music (0 A.D.'s audio/ambient and audio/music, CC-BY-SA 3.0: ~3.4 h, 103 files, none in the
# development recordings) for configs/ablation_v12_data.yaml: WAKEWORD_AMBIENT=1 fetches Debian's 0ad-data (1.4 GB
# download, ~4.6 GB while unpacking) and keeps only those two folders (~240 MB) under $WAKEWORD_CACHE/0ad.
AMBIENT_DIR="${WAKEWORD_CACHE:-$HOME/.cache/wakeword}/0ad"
if [ "${WAKEWORD_AMBIENT:-0}" = "1" ] && [ ! -f "$AMBIENT_DIR/.complete" ]; then
  if command -v apt-get >/dev/null 2>&1 && command -v unzip >/dev/null 2>&1; then
    echo "[setup] fetching 0 A.D.'s ambient sound and music (Debian 0ad-data)"
    mkdir -p "$AMBIENT_DIR"
    tmp=$(mktemp -d -p "$AMBIENT_DIR")
    if (cd "$tmp" && apt-get download 0ad-data >/dev/null 2>&1 \
          && dpkg-deb --fsys-tarfile 0ad-data_*.deb | tar -xO ./usr/share/games/0ad/mods/public/public.zip > public.zip \
          && rm -f 0ad-data_*.deb && unzip -q public.zip 'audio/ambient/*.ogg' 'audio/music/*.ogg'); then
      rm -rf "$AMBIENT_DIR/ambient" "$AMBIENT_DIR/music"
      mv "$tmp/audio/ambient" "$tmp/audio/music" "$AMBIENT_DIR/"
      echo "0 A.D. (Debian 0ad-data 0.0.26): audio/ambient and audio/music, CC-BY-SA 3.0, Wildfire Games" \
        > "$AMBIENT_DIR/SOURCE" && touch "$AMBIENT_DIR/.complete"
    else
      echo "[setup] could not fetch 0ad-data; the data build goes on without real ambient sound"
    fi
    rm -rf "$tmp"
  else
    echo "[setup] apt-get or unzip missing: skipping 0 A.D.'s ambient sound"
  fi
fi
# The ESPHome (microWakeWord) export's converter, TensorFlow, in its own environment .venv-tflite (~1.3 GB, ~3 min
# measured: docs/BENCHMARKS.md); WAKEWORD_SKIP_TFLITE=1 leaves it out (the export and its test then say how to add it).
if [ "${WAKEWORD_SKIP_TFLITE:-0}" != "1" ]; then
  PYTHON="$PY" bash scripts/setup_tflite.sh
fi
"$PY" - <<'PYEOF'
import torch
assert torch.version.cuda is None, f"expected the CPU build of torch, got CUDA {torch.version.cuda}"
print(f"[setup] torch {torch.__version__} (CPU build)")
PYEOF
