"""Hostile inputs (issue #17): files that try to run code, concurrent writers, bad configs and phrases."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wakeword.cli import main


class _RunsCode:
    """Unpickling this writes a marker file: what a crafted checkpoint would do with os.system."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _crafted_checkpoint(path: Path, marker: Path) -> Path:
    payload = {"format": "wakeword-checkpoint-v1", "arch": "mobilenetv3", "evil": _RunsCode(marker)}
    torch.save(payload, path)  # torch.save pickles: the file is a valid PyTorch archive
    return path


def test_crafted_checkpoint_runs_no_code(tmp_path):
    from wakeword.training.checkpoint import load_checkpoint

    marker = tmp_path / "marker"
    ckpt = _crafted_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(ValueError, match="Nothing in it was executed"):
        load_checkpoint(ckpt)
    assert not marker.exists()


def test_crafted_checkpoint_through_score_cli(tmp_path, capsys):
    marker = tmp_path / "marker"
    ckpt = _crafted_checkpoint(tmp_path / "evil.pt", marker)
    wav = tmp_path / "a.wav"
    import numpy as np
    import soundfile as sf

    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    assert main(["score", "--model", str(ckpt), str(wav)]) != 0
    assert not marker.exists()
    assert "convert-checkpoint" in capsys.readouterr().err


def test_old_pickled_checkpoint_converts_only_when_trusted(tiny_run, tmp_path):
    """A checkpoint holding a non-tensor Python object (as older writers could) is refused with the
    conversion command; the conversion needs --trust-source and its output loads safely."""
    from wakeword.training.checkpoint import load_checkpoint, load_model

    old = torch.load(tiny_run / "best.pt", weights_only=True)
    old["metrics"] = {k: __import__("numpy").float64(v) if isinstance(v, float) else v
                      for k, v in old["metrics"].items()}  # numpy scalars need the full unpickler
    legacy = tmp_path / "legacy.pt"
    torch.save(old, legacy)
    with pytest.raises(ValueError, match="convert-checkpoint"):
        load_checkpoint(legacy)
    new = tmp_path / "converted.pt"
    with pytest.raises(SystemExit):
        main(["convert-checkpoint", str(legacy), str(new)])
    assert not new.exists()
    assert main(["convert-checkpoint", str(legacy), str(new), "--trust-source"]) == 0
    ckpt = load_checkpoint(new)
    assert ckpt["metrics"]["val_pauc"] == pytest.approx(float(old["metrics"]["val_pauc"]))
    x = torch.zeros(1, 16000)
    assert torch.equal(load_model(new)(x), load_model(tiny_run / "best.pt")(x))


def test_every_checkpoint_the_suite_writes_is_plain_data(tiny_run):
    for name in ("best.pt", "last.pt"):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(tiny_run / name) == []


# ------------------------------------------------------------------ one writer per data folder
NOISE_ONLY = ["--phrase", "computer", "--n-positive", "0", "--n-adversarial", "0", "--n-speech", "0",
              "--n-words", "0", "--engines", "espeak-ng", "--workers", "1"]


def test_concurrent_builds_on_one_folder_do_not_duplicate_rows(tmp_path):
    import subprocess
    import sys
    import time

    from wakeword.dataset.build import DataConfig, build
    from wakeword.dataset.manifest import DataFolderBusy, read_manifest

    data = tmp_path / "data"
    first = subprocess.Popen([sys.executable, "-m", "wakeword.cli", "-q", "data", "build", "--out", str(data),
                              *NOISE_ONLY, "--n-noise", "120"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.time() + 120
    while not (data / "manifest.csv").exists() and time.time() < deadline:
        time.sleep(0.01)
    assert (data / "manifest.csv").exists(), first.stderr.read() if first.poll() is not None else "no manifest"
    cfg = DataConfig(phrase="computer", n_positive=0, n_adversarial=0, n_speech=0, n_words=0, n_noise=120,
                     engines=("espeak-ng",), workers=1)
    with pytest.raises(DataFolderBusy, match="one writer per data folder"):
        build(cfg, data, progress=False)  # while the first build is still writing
    assert first.wait(180) == 0, first.stderr.read()
    build(cfg, data, progress=False)  # afterwards it resumes: nothing left to do
    ids = [r.clip_id for r in read_manifest(data)]
    with open(data / "manifest.csv") as f:
        lines = f.read().splitlines()[1:]
    assert len(ids) == len(set(ids)) == len(lines) == 120


def test_second_build_through_the_cli_says_why(tmp_path, capsys):
    import subprocess
    import sys
    import time

    data = tmp_path / "data"
    first = subprocess.Popen([sys.executable, "-m", "wakeword.cli", "-q", "data", "build", "--out", str(data),
                              *NOISE_ONLY, "--n-noise", "120"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (data / "manifest.csv").exists() and first.poll() is None:
        time.sleep(0.01)
    assert main(["-q", "data", "build", "--out", str(data), *NOISE_ONLY, "--n-noise", "120"]) == 2
    assert "one writer per data folder" in capsys.readouterr().err
    first.wait(180)


def test_manifest_reader_reads_each_clip_once(tiny_data, tmp_path):
    import shutil

    from wakeword.dataset.manifest import read_manifest

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    text = (data / "manifest.csv").read_text()
    header, body = text.split("\n", 1)
    (data / "manifest.csv").write_text(header + "\n" + body + body)  # what two racing writers left behind
    rows = read_manifest(data)
    assert len(rows) == len(read_manifest(tiny_data)) == len({r.clip_id for r in rows})
    # a row pointing out of the data folder (a crafted manifest) is never read
    evil = body.splitlines()[0].split(",")
    evil[0], evil[1] = "evil", "../../../etc/passwd"
    with open(data / "manifest.csv", "a") as f:
        f.write(",".join(evil) + "\n")
    assert "evil" not in {r.clip_id for r in read_manifest(data)}


# ------------------------------------------------------------------ configs and phrases
@pytest.mark.parametrize("yaml_text, expected", [
    ("train:\n  steps_per_epoch: abc\n  lr: fast\n  epochs: 0\n  batch_size: -4\n",
     ["train.steps_per_epoch = 'abc': expected an integer", "train.lr = 'fast': expected a number",
      "train.epochs = 0: expected a value >= 1", "train.batch_size = -4: expected a value >= 1"]),
    ("train:\n  lr: [1, 2\n", ["not valid YAML"]),
    ("- just\n- a list\n", ["must hold a mapping"]),
    ("train: 5\n", ["train = 5: expected a mapping"]),
    ("train:\n  model: {width: wide}\n  augment: {snr_db: 3, loudness: 2}\n",
     ["train.model.width = 'wide': expected a number", "train.augment.snr_db = 3: expected a list of 2 numbers",
      "train.augment.loudness: unknown train.augment config key"]),
])
def test_bad_train_configs_fail_with_one_line_per_problem(tmp_path, capsys, yaml_text, expected):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    out = tmp_path / "run"
    assert main(["-q", "train", "--config", str(cfg), "--data", str(tmp_path / "nodata"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    for e in expected:
        assert sum(e in ln for ln in lines) == 1, (e, err)
    assert not (out / "train_summary.json").exists()


def test_epochs_zero_from_the_command_line_makes_no_empty_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["-q", "train", "--data", str(tmp_path), "--out", str(out), "--epochs", "0"]) == 2
    assert "train.epochs = 0: expected a value >= 1" in capsys.readouterr().err
    assert not (out / "train_summary.json").exists()


def test_yaml_exponent_numbers_are_numbers():
    from wakeword.training.fit import TrainConfig

    assert TrainConfig.from_dict({"lr": "1e-3"}).lr == 0.001  # PyYAML reads 1e-3 as a string


@pytest.mark.parametrize("args, expected", [
    (["--n-positive", "-5"], "data.n_positive = -5: expected a value >= 0"),
    (["--phrase", "hey " * 20], "expected at most 64 characters"),
    (["--phrase", "a b c d e f g"], "expected at most 6 words"),
    (["--phrase", " ?! "], "expected a non-empty phrase"),
])
def test_bad_data_configs_fail_before_building(tmp_path, capsys, args, expected):
    out = tmp_path / "data"
    argv = ["-q", "data", "build", "--out", str(out), "--phrase", "computer", *args]
    assert main(argv) == 2
    assert expected in capsys.readouterr().err
    assert not (out / "manifest.csv").exists()


def test_data_config_yaml_with_wrong_types(tmp_path, capsys):
    cfg = tmp_path / "d.yaml"
    cfg.write_text("data:\n  n_noise: lots\n  val_frac: 0.7\n  test_frac: 0.5\n  engines: espeak-ng\n")
    assert main(["-q", "data", "build", "--config", str(cfg), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "data.n_noise = 'lots': expected an integer" in err and "data.engines = 'espeak-ng': expected a list" in err


def test_a_phrase_starting_with_a_dash_is_spoken_not_parsed_as_an_option(tmp_path):
    from wakeword.audio.tts import EspeakBackend, Prosody

    b = EspeakBackend()
    audio = b.synthesize("--version", b.voices()[0], Prosody())  # as an argument: prints the version
    assert len(audio) > 0.3 * 16000
    marker = tmp_path / "written.wav"
    audio = b.synthesize(f"-w{marker}", b.voices()[0], Prosody())  # as an argument: write to a file
    assert len(audio) > 0.3 * 16000 and not marker.exists()


def test_hpo_and_distill_configs_are_checked_too(tmp_path):
    from wakeword.hpo.study import HpoConfig
    from wakeword.training.distill import DistillConfig
    from wakeword.validation import ConfigError

    y = tmp_path / "hpo.yaml"
    y.write_text("hpo:\n  data_dir: d\n  population: big\n  pbt: {interval: 0}\n")
    with pytest.raises(ConfigError) as e:
        HpoConfig.from_yaml(y)
    assert "hpo.population = 'big': expected an integer" in str(e.value)
    y.write_text("hpo: [1, 2]\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        HpoConfig.from_yaml(y)
    with pytest.raises(ConfigError) as e:
        DistillConfig.from_dict({"teachers": ["t.pt"], "kd_weight": -1, "cache": "yes"})
    assert str(e.value).splitlines()[1:] == ["  distill.kd_weight = -1: expected a value >= 0",
                                             "  distill.cache = 'yes': expected true or false"]


def test_demo_checks_every_section_before_building_data(tmp_path):
    from wakeword.pipeline import run_demo
    from wakeword.validation import ConfigError

    cfg = tmp_path / "demo.yaml"
    cfg.write_text("data: {phrase: computer, n_positive: 4}\ntrain: {epochs: 0}\n")
    with pytest.raises(ConfigError, match="train.epochs = 0"):
        run_demo(cfg, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "data" / "manifest.csv").exists()
