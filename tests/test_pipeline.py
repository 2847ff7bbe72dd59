"""The main job end to end on a tiny phrase: data -> teacher -> distilled student -> evaluation -> ONNX."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch


@pytest.mark.slow  # about a minute on 2 cores: `make test` runs it, `pytest -m 'not slow'` skips it
def test_demo_trains_the_teacher_then_distils_the_student(tmp_path):
    pytest.importorskip("openwakeword")
    from wakeword.pipeline import run_demo

    cfg = tmp_path / "demo.yaml"
    cfg.write_text("""
data: {phrase: computer, n_positive: 24, n_adversarial: 12, n_speech: 8, n_noise: 4, n_babble: 2, n_words: 0,
       engines: [espeak-ng]}
train: {epochs: 1, steps_per_epoch: 2, batch_size: 8, model: {width: 0.5}, augment: {phone_prob: 0.5}}
teacher: {kind: speech_embedding, train: {steps_per_epoch: 3, model: {hidden: 16}}, layers: [0, 1]}
distill: {student_stages: [2, 3], temperature: {policy: cosine, start: 4.0, end: 1.0}}
eval: {sets: []}
""")
    report = run_demo(cfg, tmp_path / "out", progress=False)
    text = report.read_text()
    assert "distilled from a speech_embedding teacher" in text
    teacher = torch.load(tmp_path / "out" / "teacher" / "best.pt", weights_only=True)
    # The teacher inherits the student's data mixture and augmentation, with its own overrides on top.
    assert teacher["arch"] == "speech_embedding" and teacher["config"]["train"]["augment"] == {"phone_prob": 0.5}
    assert teacher["config"]["train"]["steps_per_epoch"] == 3
    dist = json.loads((tmp_path / "out" / "run" / "distill_report.json").read_text())
    assert [t["layers"] for t in dist["teachers"]] == [[0, 1]]
    assert (tmp_path / "out" / "export" / "model.onnx").is_file()
    assert "teacher_s" in json.loads((tmp_path / "out" / "timings.json").read_text())


def test_demo_with_the_speech_embedding_detector_exports_window_and_streaming_graphs(tmp_path):
    pytest.importorskip("openwakeword")
    import numpy as np

    from wakeword.export import OnnxDetector, OnnxStreamer
    from wakeword.pipeline import run_demo

    cfg = tmp_path / "demo.yaml"
    cfg.write_text("""
data: {phrase: computer, n_positive: 16, n_adversarial: 8, n_speech: 8, n_noise: 4, n_babble: 2, n_words: 0,
       engines: [espeak-ng], window_s: 1.5}
train: {arch: speech_embedding, lr: 0.001, epochs: 1, steps_per_epoch: 2, batch_size: 8,
        model: {hidden: 8, context: 16}, cache_draws: 1, select: frr, threshold_fa_per_hour: 0.5, val_noisy: true}
eval: {sets: [EVALSET]}
""".replace("EVALSET", str(Path(__file__).resolve().parents[1] / "configs" / "eval" / "real_dev_computer.yaml")))
    # the recipe's path (16-embedding head, cached embeddings, FRR selection, calibrated threshold) for the user's
    # own phrase: the real "computer" recordings are not its evaluation set
    text = run_demo(cfg, tmp_path / "out", progress=False, phrase="hey nova").read_text()
    assert "model: speech_embedding" in text and "stay within 0.5 per hour" in text
    assert "real-dev computer" not in text  # the set (named so in reports) is never evaluated for "hey nova"
    export = tmp_path / "out" / "export"
    window = OnnxDetector(export / "model.onnx")
    assert json.loads(window.metadata["phrase"]) == "hey nova"
    audio = np.random.default_rng(0).normal(0, 0.05, 3 * 16000).astype(np.float32)
    scores = OnnxStreamer(export / "model.stream.onnx").feed(audio)
    assert len(scores) > 0 and np.all((scores >= 0) & (scores <= 1))
    # ... and as the model Home Assistant's openWakeWord loads, named by the phrase, which openWakeWord itself runs
    from openwakeword.model import Model

    oww = export / "openwakeword" / "hey_nova.onnx"
    manifest = json.loads(oww.with_suffix(".json").read_text())
    assert manifest["wake_word"] == "hey nova" and manifest["embeddings"] == 16 and f"`{oww}`" in text
    got = Model(wakeword_models=[str(oww)], inference_framework="onnx").predict(
        (audio[:1280] * 32767).astype(np.int16))
    assert set(got) == {"hey_nova"} and 0.0 <= got["hey_nova"] <= 1.0


@pytest.mark.slow  # a mixednet trained a few steps, then TensorFlow's converter: about a minute on 2 cores
def test_demo_of_the_esphome_student_writes_the_esphome_model(tmp_path):
    from test_mww_export import SMALL, _tflite_python
    from wakeword.pipeline import run_demo

    _tflite_python()
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(f"""
data: {{phrase: computer, n_positive: 16, n_adversarial: 8, n_speech: 8, n_noise: 4, n_babble: 2, n_words: 0,
       engines: [espeak-ng]}}
train: {{arch: mixednet, model: {json.dumps(SMALL)}, epochs: 1, steps_per_epoch: 4, batch_size: 8}}
eval: {{sets: []}}
""")
    text = run_demo(cfg, tmp_path / "out", progress=False, phrase="hey nova").read_text()
    esphome = tmp_path / "out" / "export" / "esphome"
    manifest = json.loads((esphome / "hey_nova.json").read_text())
    assert manifest["type"] == "micro" and manifest["wake_word"] == "hey nova" and manifest["model"] == "hey_nova.tflite"
    assert (esphome / "hey_nova.tflite").is_file() and "ESPHome / microWakeWord" in text


def test_demo_refuses_a_distill_section_without_a_teacher(tmp_path):
    from wakeword.pipeline import run_demo

    cfg = tmp_path / "demo.yaml"
    cfg.write_text("data: {phrase: computer}\ndistill: {kd_weight: 1.0}\n")
    with pytest.raises(ValueError, match="needs a 'teacher:' section"):
        run_demo(cfg, tmp_path / "out", progress=False)


def test_the_shipped_demo_configs_are_valid():
    """The shipped demo configs parse into the configs the demo builds; the default is the speech-embedding model."""
    from pathlib import Path

    import yaml

    from wakeword.dataset.build import DataConfig
    from wakeword.training.distill import DistillConfig, teacher_config
    from wakeword.training.fit import TrainConfig

    root = Path(__file__).resolve().parents[1] / "configs"
    for name in ("demo.yaml", "demo_student.yaml", "demo_distilled.yaml"):
        doc = yaml.safe_load((root / name).read_text())
        DataConfig.from_dict(doc["data"])
        TrainConfig.from_dict(doc["train"])
    assert TrainConfig.from_dict(yaml.safe_load((root / "demo.yaml").read_text())["train"]).arch == "speech_embedding"
    assert TrainConfig.from_dict(yaml.safe_load((root / "demo_student.yaml").read_text())["train"]).arch == "mobilenetv3"
    doc = yaml.safe_load((root / "demo_distilled.yaml").read_text())
    assert teacher_config(doc["teacher"]["kind"], doc["teacher"]["train"]).arch == "speech_embedding"
    cfg = DistillConfig.from_dict({**doc["distill"], "teachers": [{"checkpoint": "t.pt", "layers": doc["teacher"]["layers"]}]})
    assert cfg.student_stages == (2, 3)
