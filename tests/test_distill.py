"""Distillation: the loss pieces, gradients through feature matching, the teacher cache, and a real
tiny run from the command line whose student is an ordinary checkpoint."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from wakeword.training.distill import (
    AdaptiveT,
    DistillConfig,
    DistillLoss,
    align_time,
    kd_loss,
    make_temperature,
    spread_layers,
    teacher_config,
    teacher_weights,
)
from wakeword.training.fit import Batch, TrainConfig, fit

TINY_STUDENT = {"width": 0.5}


@pytest.fixture(scope="module")
def teachers(tiny_data, tmp_path_factory) -> dict[str, str]:
    """Both teachers really trained (a few steps) on the tiny data set with `fit`."""
    out = {}
    for kind in ("conformer", "wav2vec2"):
        run = tmp_path_factory.mktemp(f"teacher_{kind}")
        cfg = teacher_config(kind, {"epochs": 1, "steps_per_epoch": 3, "batch_size": 8,
                                    "model": {"preset": "tiny"}})
        fit(cfg, tiny_data, run, progress=False)
        out[kind] = str(run / "best.pt")
    return out


def _student():
    from wakeword.features.logmel import FeatureConfig
    from wakeword.models.kws import WakeWordModel

    torch.manual_seed(0)
    return WakeWordModel("mobilenetv3", TINY_STUDENT, FeatureConfig())


def _batch(model, n: int = 6, step: int = 0, total: int = 10) -> Batch:
    g = torch.Generator().manual_seed(3)
    audio = 0.1 * torch.randn(n, model.feat.window_samples, generator=g)
    labels = torch.tensor([1.0, 0.0] * (n // 2))
    inputs = model.frontend(audio)
    logits, feats = model.backbone.forward_features(inputs)
    keys = torch.stack([torch.zeros(n, dtype=torch.long), torch.arange(n)], dim=1)
    return Batch(audio, labels, keys, inputs, logits, feats, step, total)


# ------------------------------------------------------------------ loss pieces
def test_kd_loss_matches_formula_and_is_minimal_at_the_teacher():
    zs, zt = torch.tensor([0.3, -2.0, 4.0]), torch.tensor([1.5, -1.0, 3.0])
    t = 2.5
    p = torch.sigmoid(zt / t)
    q = torch.sigmoid(zs / t)
    manual = -(p * q.log() + (1 - p) * (1 - q).log()) * t * t
    assert torch.allclose(kd_loss(zs, zt, t), manual, atol=1e-5)
    z = zt.clone().requires_grad_(True)
    kd_loss(z, zt, t).sum().backward()
    assert z.grad.abs().max() < 1e-6  # the gradient vanishes where the student equals the teacher


def test_temperature_policies():
    assert make_temperature({"policy": "constant", "t": 3.0})(0.7, 0.1) == 3.0
    lin = make_temperature({"policy": "linear", "start": 4.0, "end": 1.0})
    assert lin(0.0, 0) == 4.0 and lin(1.0, 0) == 1.0 and math.isclose(lin(0.5, 0), 2.5)
    cos = make_temperature({"policy": "cosine", "start": 4.0, "end": 1.0})
    assert math.isclose(cos(0.0, 0), 4.0) and math.isclose(cos(1.0, 0), 1.0) and math.isclose(cos(0.5, 0), 2.5)
    assert cos(0.1, 0) > lin(0.1, 0)  # slow start
    ada = make_temperature({"policy": "adaptive", "min": 1.0, "max": 5.0, "signal": "entropy"})
    assert isinstance(ada, AdaptiveT) and ada(0.3, 0.0) == 1.0 and ada(0.3, 1.0) == 5.0
    for bad in ({"policy": "warm"}, {"policy": "constant", "t": -1}, {"policy": "linear", "stop": 1},
                {"policy": "adaptive", "signal": "luck"}):
        with pytest.raises(ValueError):
            make_temperature(bad)


def test_teacher_weights():
    probs = torch.tensor([[0.9, 0.4], [0.2, 0.5]])  # (B=2, K=2)
    labels = torch.tensor([1.0, 0.0])
    base = torch.tensor([1.0, 3.0])
    fixed = teacher_weights("fixed", probs, labels, base)
    assert torch.allclose(fixed, torch.tensor([[0.25, 0.75], [0.25, 0.75]]), atol=1e-4)
    corr = teacher_weights("correctness", probs, labels, torch.ones(2))
    assert corr[0, 0] > corr[0, 1] and corr[1, 0] > corr[1, 1]  # the teacher that is right counts more
    conf = teacher_weights("confidence", probs, labels, torch.ones(2))
    assert conf[1, 0] > 0.99  # a teacher at 0.5 carries no information
    for w in (fixed, corr, conf):
        assert torch.allclose(w.sum(dim=1), torch.ones(2))


def test_align_time_and_layer_spread():
    x = torch.arange(8.0).view(1, 1, 8)
    assert align_time(x, 8) is x
    y = align_time(x, 4)
    assert y.shape == (1, 1, 4) and torch.all(y[0, 0, 1:] > y[0, 0, :-1])
    assert spread_layers(12, (1, 3), 4) == (5, 11)
    assert spread_layers(2, (0, 1, 2, 3), 4) == (0, 0, 1, 1)


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="at least one teacher"):
        DistillConfig.from_dict({})
    with pytest.raises(ValueError, match="unknown distill config keys"):
        DistillConfig.from_dict({"teachers": ["a.pt"], "alpha": 1})
    with pytest.raises(ValueError, match="unknown feature loss"):
        DistillConfig.from_dict({"teachers": ["a.pt"], "feature_loss": "l7"})
    with pytest.raises(ValueError, match="unknown teacher weighting"):
        DistillConfig.from_dict({"teachers": ["a.pt"], "weighting": "vote"})
    with pytest.raises(ValueError, match="2 student stages"):
        DistillConfig.from_dict({"teachers": [{"checkpoint": "a.pt", "layers": [0]}]})


# ------------------------------------------------------------------ with real teachers
def test_untrained_teacher_is_refused(tmp_path):
    from wakeword.features.logmel import FeatureConfig
    from wakeword.models.kws import WakeWordModel
    from wakeword.training.checkpoint import save_checkpoint

    raw = WakeWordModel("conformer", {"preset": "tiny"}, FeatureConfig())
    save_checkpoint(tmp_path / "raw.pt", raw, {"train": {}})  # never went through fit: no val metrics
    with pytest.raises(ValueError, match="never trained"):
        DistillLoss(DistillConfig.from_dict({"teachers": [str(tmp_path / "raw.pt")]}), [8, 16, 24, 32])


@pytest.mark.parametrize("feature_loss", ["mse", "cosine", "relational"])
def test_feature_matching_sends_gradients_to_student_and_adapters(teachers, feature_loss):
    student = _student().train()
    cfg = DistillConfig.from_dict({"teachers": list(teachers.values()), "kd_weight": 0.0, "feature_weight": 1.0,
                                   "feature_loss": feature_loss, "student_stages": [1, 3]})
    term = DistillLoss(cfg, student.backbone.feature_dims)
    loss, logs = term(_batch(student))
    assert loss.requires_grad and logs["loss_fm"] > 0
    loss.backward()
    for adapters in term.adapters:
        for a in adapters:
            assert a.weight.grad is not None and a.weight.grad.abs().sum() > 0
    stage1 = [p for p in student.backbone.stages[1].parameters()]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in stage1)
    # Teachers are frozen: no gradient reaches them.
    for t in term.teachers:
        assert all(p.grad is None for p in t.model.parameters())


def test_soft_labels_from_both_teachers_are_logged(teachers):
    student = _student().train()
    cfg = DistillConfig.from_dict({"teachers": [teachers["conformer"], {"checkpoint": teachers["wav2vec2"],
                                                                        "weight": 2.0}],
                                   "weighting": "correctness", "feature_weight": 0.0,
                                   "temperature": {"policy": "adaptive", "signal": "agreement"}})
    term = DistillLoss(cfg, student.backbone.feature_dims)
    loss, logs = term(_batch(student))
    loss.backward()
    assert {"temperature", "loss_kd", "loss_kd_0_conformer", "loss_kd_1_wav2vec2", "weight_0_conformer",
            "weight_1_wav2vec2"} <= set(logs)
    assert 1.0 <= logs["temperature"] <= 4.0
    assert math.isclose(logs["weight_0_conformer"] + logs["weight_1_wav2vec2"], 1.0, rel_tol=1e-5)
    assert student.backbone.classifier.weight.grad.abs().sum() > 0
    assert [t["arch"] for t in term.teacher_report()] == ["conformer", "wav2vec2"]
    assert all(0 <= t["val_pauc"] <= 1 for t in term.teacher_report())


def test_cached_teacher_outputs_equal_live_ones(teachers, tiny_data, tmp_path):
    from wakeword.dataset.augment import AugmentConfig
    from wakeword.dataset.manifest import read_manifest, select
    from wakeword.dataset.torch_data import TrainWindows, load_clips

    student = _student().train()
    rows = sorted(select(read_manifest(tiny_data), "train"), key=lambda r: r.clip_id)[:10]
    ds = TrainWindows(rows, load_clips(rows, tiny_data, False), student.feat, AugmentConfig(), [], [], seed=0)
    spec = {"teachers": list(teachers.values()), "feature_weight": 1.0}
    live = DistillLoss(DistillConfig.from_dict(spec), student.backbone.feature_dims)
    cached = DistillLoss(DistillConfig.from_dict({**spec, "cache": True}), student.backbone.feature_dims,
                         augment_draws=2)
    with pytest.raises(ValueError, match="augment_draws"):
        DistillLoss(DistillConfig.from_dict({**spec, "cache": True}), student.backbone.feature_dims).prepare(
            ds, torch.device("cpu"), tmp_path, False)
    cached.prepare(ds, torch.device("cpu"), tmp_path, progress=False)
    assert all(t.model is None for t in cached.teachers)  # teachers left memory
    assert (tmp_path / "teacher_cache.pt").exists()
    ds.set_epoch(1)
    idx = [0, 3, 7]
    audio = torch.stack([ds[i][0] for i in idx])
    keys = torch.tensor([[1, i] for i in idx])
    b = Batch(audio, torch.zeros(3), keys, student.frontend(audio), torch.zeros(3), [], 0, 1)
    z_live, f_live = live._teacher_outputs(b)
    z_cache, f_cache = cached._teacher_outputs(b)
    assert torch.allclose(z_live, z_cache, atol=1e-5)
    for fl, fc in zip(f_live, f_cache):
        for a, c in zip(fl, fc):
            a = align_time(a, c.shape[-1])
            assert torch.allclose(a, c, atol=2e-2 * float(a.abs().max()) + 1e-3)


# ------------------------------------------------------------------ end to end
def test_distill_cli_trains_an_ordinary_student(teachers, tiny_data, tmp_path):
    from wakeword.cli import main

    out = tmp_path / "distilled"
    cfg = tmp_path / "d.yaml"
    cfg.write_text("train:\n  epochs: 2\n  steps_per_epoch: 3\n  batch_size: 8\n  augment_draws: 2\n"
                   "  model: {width: 0.5}\n"
                   "distill:\n  temperature: {policy: cosine, start: 3.0, end: 1.0}\n  weighting: confidence\n")
    args = ["-q", "distill", "--config", str(cfg), "--data", str(tiny_data), "--out", str(out), "--cache",
            "--teacher", teachers["conformer"], "--teacher", teachers["wav2vec2"]]
    assert main(args) == 0
    steps = [json.loads(x) for x in (out / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == list(range(1, 7))
    for key in ("temperature", "loss_kd", "loss_fm", "loss_cls", "loss"):
        assert all(key in s for s in steps)
    temps = [s["temperature"] for s in steps]
    assert temps[0] == pytest.approx(3.0) and temps[-1] == pytest.approx(1.0) and temps == sorted(temps, reverse=True)
    report = json.loads((out / "distill_report.json").read_text())
    assert len(report["teachers"]) == 2 and report["student_val_pauc"] is not None
    ckpt = torch.load(out / "best.pt", weights_only=True)
    assert ckpt["arch"] == "mobilenetv3" and not any(k.startswith("adapters") for k in ckpt["state_dict"])
    # An ordinary checkpoint: eval, export and score accept it.
    assert main(["-q", "eval", "--model", str(out / "best.pt"), "--data", str(tiny_data),
                 "--out", str(tmp_path / "ev")]) == 0
    assert main(["-q", "export", "--model", str(out / "best.pt"), "--out", str(tmp_path / "m.onnx")]) == 0
    # The same run folder with another distillation config is refused, not silently mixed.
    args2 = [a if a != "confidence" else "x" for a in args] + ["--weighting", "fixed"]
    assert main(args2) == 2
    # Rerunning the finished command resumes (nothing retrained) and gives the same best checkpoint.
    before = (out / "best.pt").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "best.pt").stat().st_mtime_ns == before


def test_teacher_train_cli_and_bad_flags(tiny_data, tmp_path, capsys):
    from wakeword.cli import main

    out = tmp_path / "t"
    assert main(["-q", "teacher", "train", "--kind", "conformer", "--preset", "tiny", "--data", str(tiny_data),
                 "--out", str(out), "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8"]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["params"] > 0 and "val_pauc" in summary["best"]
    with pytest.raises(SystemExit):
        main(["teacher", "train", "--kind", "conformer", "--pretrained", "x", "--data", str(tiny_data),
              "--out", str(out)])
    assert main(["-q", "teacher", "train", "--kind", "wav2vec2", "--pretrained", str(tmp_path / "none"),
                 "--data", str(tiny_data), "--out", str(tmp_path / "w")]) == 2
    assert "cannot load a pretrained Wav2Vec2" in capsys.readouterr().err


def test_teacher_config_defaults_and_overrides():
    cfg = teacher_config("wav2vec2", {"lr": 1e-4, "model": {"freeze_layers": 1}})
    assert isinstance(cfg, TrainConfig) and cfg.arch == "wav2vec2" and cfg.lr == 1e-4
    assert cfg.model == {"preset": "small", "freeze_layers": 1}
    with pytest.raises(ValueError, match="unknown teacher kind"):
        teacher_config("gpt", {})


def test_experiment_runner_end_to_end(tiny_data, tmp_path):
    """The experiment on the tiny data: baseline, a teacher and its distilled student, two seeds."""
    from wakeword.experiments import DistillExperiment, distill_experiment, markdown, write_results

    exp = DistillExperiment(data_dir=str(tiny_data), seeds=(0, 1),
                            train={"epochs": 1, "steps_per_epoch": 2, "batch_size": 8, "model": TINY_STUDENT},
                            teachers={"conformer": {"model": {"preset": "tiny"}}},
                            distill={"cache": True}, variants=("baseline", "teacher_conformer", "distill_conformer"))
    res = distill_experiment(exp, tmp_path / "exp")
    assert set(res["variants"]) == {"baseline", "teacher_conformer", "distill_conformer"}
    m = res["variants"]["distill_conformer"]["metrics"]["test split"]["pauc"]
    assert len(m["values"]) == 2 and m["std"] == pytest.approx(float(np.std(m["values"], ddof=1)))
    # the experiment's tables go to its own folder (docs are written by people), rewritten on every run
    write_results(tmp_path / "exp", "## Distillation", markdown(res, "cmd A"))
    md = write_results(tmp_path / "exp", "## Distillation", markdown(res, "cmd B"))
    text = md.read_text()
    assert md == tmp_path / "exp" / "results.md" and "cmd B" in text and "cmd A" not in text
    assert "| baseline |" in text and "| distill_conformer |" in text
    with pytest.raises(ValueError, match="needs teacher_conformer"):
        distill_experiment(DistillExperiment(data_dir=str(tiny_data), variants=("distill_both",)), tmp_path / "e2")


def test_speech_embedding_teacher_trains_and_distils_from_the_command_line(tiny_data, tmp_path):
    """The pretrained-embedding teacher: trained through `teacher train`, then a student distilled from it."""
    pytest.importorskip("openwakeword")
    from wakeword.cli import main

    teacher = tmp_path / "se"
    assert main(["-q", "teacher", "train", "--kind", "speech_embedding", "--data", str(tiny_data),
                 "--out", str(teacher), "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8"]) == 0
    ckpt = torch.load(teacher / "best.pt", weights_only=True)
    assert ckpt["arch"] == "speech_embedding" and "val_pauc" in ckpt["metrics"]
    # Only the head trained: the embedding's weights are the pretrained ones.
    from wakeword.models.speech_embedding import SpeechEmbedding, default_onnx_dir

    ref = SpeechEmbedding.from_onnx(default_onnx_dir()).state_dict()
    for k, v in ref.items():
        assert torch.equal(ckpt["state_dict"][f"backbone.embedding.{k}"], v), k
    out = tmp_path / "student"
    assert main(["-q", "distill", "--data", str(tiny_data), "--out", str(out), "--teacher", str(teacher / "best.pt"),
                 "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8"]) == 0
    report = json.loads((out / "distill_report.json").read_text())
    assert [t["arch"] for t in report["teachers"]] == ["speech_embedding"]
    assert torch.load(out / "best.pt", weights_only=True)["arch"] == "mobilenetv3"


# ------------------------------------------------------------------ a shorter teacher (issue #19 item 3)
MICRO = {"first_channels": 16, "channels": [24, 24, 24, 24]}  # the default kernels: the 1.37 s window


@pytest.fixture(scope="module")
def se_teacher(tiny_data, tmp_path_factory) -> str:
    """The default detector's kind (speech_embedding head, 1.0 s window) trained a few steps."""
    pytest.importorskip("openwakeword")
    run = tmp_path_factory.mktemp("teacher_se")
    fit(teacher_config("speech_embedding", {"epochs": 1, "steps_per_epoch": 3, "batch_size": 8}), tiny_data, run,
        progress=False)
    return str(run / "best.pt")


def test_a_speech_embedding_teacher_scores_its_best_span_of_a_longer_student_window(se_teacher):
    """The 1.0 s teacher on the 1.37 s microWakeWord window: its logit is the max over the 1.0 s windows inside it,
    80 ms apart (what it would have fired on in a stream); its features cover the whole window."""
    from wakeword.training.distill import TeacherSpec, _Teacher

    t = _Teacher(TeacherSpec(se_teacher, layers=(0, 1)), (2, 3), 4)
    student_feat = TrainConfig(arch="mixednet", model=MICRO).feature_config()
    tw, sw = t.feat.window_samples, student_feat.window_samples
    assert tw < sw
    g = torch.Generator().manual_seed(5)
    audio = 0.1 * torch.randn(3, sw, generator=g)
    logits, feats = t.run(audio, amp=False)
    # Every span of 3 embeddings (80 ms apart) the window holds is one the teacher scores in a stream; a span needs
    # 0.93 s of audio, so the last one starts less than 1.0 s before the end (zeros after the window are not read).
    step, span = 1280, 512 + 160 * 91  # one embedding; the audio 3 embeddings read (92 frames of n_fft 512)
    padded = torch.nn.functional.pad(audio, (0, tw))
    subs = torch.stack([t.run(padded[:, o:o + tw], amp=False)[0] for o in range(0, sw - span + 1, step)], dim=1)
    assert subs.shape[1] > (sw - tw) // step + 1  # more spans than whole 1.0 s windows at 80 ms steps
    assert torch.allclose(logits, subs.amax(dim=1), atol=1e-4), (logits, subs)
    assert feats[0].shape[-1] > t.run(audio[:, :tw], amp=False)[1][0].shape[-1]  # more embeddings than 1.0 s gives


def test_mixednet_micro_student_distils_from_a_shorter_speech_embedding_teacher(se_teacher, tiny_data, tmp_path):
    """The ESPHome student (micro front end, 1.37 s) learns from the 1.0 s default detector through the one fit(),
    with the teacher cache (cached = live is tested above for equal windows); a fixed-window teacher that is
    shorter than the student is refused with a clear error."""
    from wakeword.training.distill import distill

    cfg = TrainConfig(arch="mixednet", model=MICRO, epochs=1, steps_per_epoch=3, batch_size=8, augment_draws=2)
    dcfg = DistillConfig.from_dict({"teachers": [{"checkpoint": se_teacher, "layers": [0, 1]}],
                                    "student_stages": [2, 3], "cache": True})
    summary = distill(cfg, dcfg, tiny_data, tmp_path / "micro", progress=False)
    ckpt = torch.load(tmp_path / "micro" / "best.pt", weights_only=True)
    assert ckpt["arch"] == "mixednet" and summary["distill"]["teachers"][0]["arch"] == "speech_embedding"
    cache = torch.load(tmp_path / "micro" / "teacher_cache.pt", weights_only=True)
    assert cache["logits"].shape[:2] == (1, 2) and torch.isfinite(cache["logits"]).all()


def test_a_fixed_window_teacher_must_match_the_student_window(teachers, tiny_data, tmp_path):
    from wakeword.training.distill import distill

    cfg = TrainConfig(arch="mixednet", model=MICRO, epochs=1, steps_per_epoch=2, batch_size=8)
    dcfg = DistillConfig.from_dict({"teachers": [teachers["conformer"]], "student_stages": [2, 3]})
    with pytest.raises(ValueError, match="scores fixed windows only"):
        distill(cfg, dcfg, tiny_data, tmp_path / "bad", progress=False)
