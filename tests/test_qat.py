"""Quantization-aware fine-tuning: the fake INT8 forward agrees with ONNX Runtime's INT8 model, stripping
gives an ordinary checkpoint, a QAT fit resumes, and `wakeword export --qat` reports and refuses clearly."""
import copy
import json
import sys

import numpy as np
import pytest
import torch

from conftest import start_train_and_kill


def _windows(audio: np.ndarray, n: int, hop: int) -> np.ndarray:
    return np.stack([audio[i:i + n] for i in range(0, len(audio) - n, hop)]).astype(np.float32)


def test_fake_quant_agrees_with_ort_int8(tmp_path, speech_audio):
    import onnx
    from onnx import numpy_helper

    from conftest import responsive_model
    from wakeword.export import OnnxDetector, export_onnx, quantize_int8
    from wakeword.training.qat import WEIGHT_QRANGE, QuantLayer, prepare_qat

    m = responsive_model(speech_audio)
    n = m.feat.window_samples
    cal = _windows(speech_audio, n, n // 8)
    q = quantize_int8(export_onnx(m, tmp_path / "m.onnx"), tmp_path / "m.int8.onnx", cal)
    fq = prepare_qat(copy.deepcopy(m), torch.from_numpy(cal)).eval()

    # Same quantization parameters as the ones ORT wrote: every quantized conv's input and output
    # scale / zero point, and its per-channel weight scales, in graph order.
    g = onnx.load(str(q)).graph
    prod = {o: nd for nd in g.node for o in nd.output}
    cons = {}
    for nd in g.node:
        for i in nd.input:
            cons.setdefault(i, []).append(nd)

    def const(name):
        init = [i for i in g.initializer if i.name == name]
        return numpy_helper.to_array(init[0] if init else prod[name].attribute[0].t)

    convs = [nd for nd in g.node if nd.op_type == "Conv" and getattr(prod.get(nd.input[0]), "op_type", "") ==
             "DequantizeLinear"]
    layers = [x for x in fq.modules() if isinstance(x, QuantLayer)]
    assert len(layers) == len(convs) > 10
    producer_of_input = None
    for nd, layer in zip(convs, layers):
        act_in = layer.act_in or producer_of_input
        s_in, z_in = (const(x) for x in prod[nd.input[0]].input[1:3])
        q_out = cons[nd.output[0]][0]
        s_out, z_out = (const(x) for x in q_out.input[1:3])
        w_scale = const(prod[nd.input[1]].input[1])
        if act_in is not None:  # (the input of a residual block is quantized before the block)
            s, z = act_in.qparams()
            assert float(s) == pytest.approx(float(s_in), rel=1e-4) and int(z) == int(z_in)
        s, z = layer.act_out.qparams()
        assert float(s) == pytest.approx(float(s_out), rel=1e-4) and int(z) == int(z_out)
        w, _ = layer.folded()
        np.testing.assert_allclose(w.detach().abs().flatten(1).amax(1).numpy() / WEIGHT_QRANGE[1], w_scale,
                                   rtol=1e-4)
        producer_of_input = layer.act_out

    # End to end: the fake-quant scores track ORT's INT8 scores much more closely than the float ones do
    # (not exactly: a one-step rounding flip from float noise in the front end propagates through 30 layers).
    # ORT's scores are taken from the graph run unfused (float ops between Quantize / DequantizeLinear): the
    # integer semantics every CPU should compute; that its fused kernels do is the next test.
    test = _windows(speech_audio[len(speech_audio) // 3:], n, n // 5)

    def logit(p):
        p = np.clip(p, 1e-7, 1 - 1e-7)
        return np.log(p / (1 - p))

    ref = _ort_logits(q, test)
    assert np.abs(logit(OnnxDetector(q).score_windows(test)) - ref).mean() < 0.2  # OnnxDetector: the same graph
    with torch.no_grad():
        fake = fq(torch.from_numpy(test)).numpy()
        flt = m(torch.from_numpy(test)).numpy()
    assert ref.std() > 0.5
    err_fake, err_float = np.abs(fake - ref).mean(), np.abs(flt - ref).mean()
    # measured on real speech: 0.22 vs 0.43 logit, correlation 0.968 vs 0.925 (7-bit weights; with
    # 8-bit ones, on a CPU whose kernels do not saturate: 0.20 vs 0.49, 0.991 vs 0.973)
    assert err_fake < 0.6 * err_float, (err_fake, err_float)
    assert np.corrcoef(fake, ref)[0, 1] > max(0.95, np.corrcoef(flt, ref)[0, 1])


def _ort_logits(model_path, windows: np.ndarray, optimized: bool = False) -> np.ndarray:
    """Logits of an ONNX model by ORT, with all graph optimizations (fused integer kernels) or none."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    s = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    p = np.concatenate([s.run(None, {"audio": x[None]})[0].reshape(-1) for x in windows]).clip(1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def test_int8_kernels_compute_the_graph_on_this_cpu(tmp_path, speech_audio):
    """ORT's fused integer kernels (chosen per CPU: with or without VNNI) agree with the same QDQ graph run
    unfused, as float ops between Quantize / DequantizeLinear (the exact integer semantics, the same on
    every machine). With 8-bit weights, x86 CPUs without VNNI saturate int16 pair sums and miss the
    reference by 1.2-1.6 logit on average (max 2.6-6.1; benchmarks/int8_kernels.py); with the export's
    7-bit weights what remains is requantization rounding, on every x86 CPU."""
    from conftest import responsive_model
    from wakeword.export import export_onnx, quantize_int8

    m = responsive_model(speech_audio)
    n = m.feat.window_samples
    q = quantize_int8(export_onnx(m, tmp_path / "m.onnx"), tmp_path / "m.int8.onnx", _windows(speech_audio, n, n // 8))
    test = _windows(speech_audio[len(speech_audio) // 3:], n, n // 5)

    fused, ref = _ort_logits(q, test, optimized=True), _ort_logits(q, test)
    with torch.no_grad():
        flt = m(torch.from_numpy(test)).numpy()
    assert np.abs(ref - flt).mean() > 0.2  # the comparison has something to see: INT8 does change scores
    # measured here (AVX2, no VNNI): 0.00-0.07 mean, 0.54 max; 8-bit weights: 1.2-1.6 mean
    assert np.abs(fused - ref).mean() < 0.2, np.abs(fused - ref).mean()
    assert np.abs(fused - ref).mean() < 0.3 * np.abs(ref - flt).mean()


def test_strip_gives_an_ordinary_checkpoint_that_loads_and_exports(tmp_path, speech_audio):
    from conftest import responsive_model
    from wakeword.export import OnnxDetector, export_onnx, quantize_int8
    from wakeword.inference import Detector
    from wakeword.training.checkpoint import save_checkpoint
    from wakeword.training.qat import is_qat, observer_state, prepare_qat, strip_qat

    m = responsive_model(speech_audio, width=0.5)
    n = m.feat.window_samples
    cal = torch.from_numpy(_windows(speech_audio, n, n // 4))
    qm = prepare_qat(copy.deepcopy(m), cal)
    params = {id(p) for p in m.parameters()}
    assert len({id(p) for p in qm.parameters()}) == len(params)  # no parameter added or dropped
    # One training step through the fake quantization: gradients reach the float weights (STE),
    # BatchNorm running statistics stay frozen.
    bn = qm.backbone.head[0].bn
    mean_before = bn.running_mean.clone()
    qm.train()
    opt = torch.optim.SGD(qm.parameters(), lr=0.01)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(qm(cal[:8]), torch.ones(8))
    loss.backward()
    assert qm.backbone.head[0].layer.weight.grad.abs().sum() > 0 and bn.weight.grad is not None
    opt.step()
    assert torch.equal(bn.running_mean, mean_before)

    plain = strip_qat(qm)
    assert is_qat(qm) and not is_qat(plain)  # the prepared model is left as it was
    assert set(plain.state_dict()) == set(m.state_dict())
    # Round trip (what a resumed QAT run does): the stripped weights, prepared again with the saved
    # activation ranges, give exactly the fine-tuned fake-quant network.
    again = prepare_qat(copy.deepcopy(plain), observers=observer_state(qm)).eval()
    with torch.no_grad():
        assert torch.equal(again(cal), qm.eval()(cal))
    save_checkpoint(tmp_path / "qat.pt", plain, {"note": "qat"})
    det = Detector.load(tmp_path / "qat.pt")
    scores, _ = det.score_track(speech_audio)
    f = export_onnx(det.model, tmp_path / "qat.onnx")
    q = quantize_int8(f, tmp_path / "qat.int8.onnx", cal.numpy())
    a, _ = OnnxDetector(f).score_track(speech_audio)
    assert np.abs(a - scores).max() < 1e-4
    assert len(OnnxDetector(q).score_track(speech_audio)[0]) == len(scores)
    # Untouched: a prepared-then-stripped model computes exactly what the original did.
    with torch.no_grad():
        assert torch.allclose(strip_qat(prepare_qat(copy.deepcopy(m), cal)).eval()(cal), m.eval()(cal), atol=1e-6)


def test_prepare_refuses_other_models():
    from wakeword.features.logmel import FeatureConfig
    from wakeword.models.kws import WakeWordModel
    from wakeword.training.qat import prepare_qat

    with pytest.raises(ValueError, match="MobileNetV3 student"):
        prepare_qat(WakeWordModel("conformer", {"preset": "tiny"}, FeatureConfig()))
    m = prepare_qat(WakeWordModel("mobilenetv3", {"width": 0.5}, FeatureConfig()))
    with pytest.raises(ValueError, match="already prepared"):
        prepare_qat(m)


@pytest.mark.slow  # about a minute on 2 cores: `make test` runs it, `pytest -m 'not slow'` skips it
def test_qat_fit_resumes_after_kill(tiny_run, tiny_data, tmp_path):
    from wakeword.training.checkpoint import load_model
    from wakeword.training.fit import TrainConfig, fit

    init = str(tiny_run / "best.pt")
    cfg = TrainConfig(epochs=3, steps_per_epoch=3, batch_size=8, model={"width": 0.5}, seed=1, lr=3e-4, qat=True,
                      init_from=init)
    ref = tmp_path / "ref"
    fit(cfg, tiny_data, ref, progress=False)
    load_model(ref / "best.pt")  # an ordinary checkpoint
    assert load_model(ref / "last.pt").arch == "mobilenetv3"

    run = tmp_path / "killed"
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(f"train:\n  model: {{width: 0.5}}\n  qat: true\n  lr: 0.0003\n  init_from: {init}\n")
    cmd = [sys.executable, "-m", "wakeword.cli", "-q", "train", "--data", str(tiny_data), "--out", str(run),
           "--epochs", "3", "--steps-per-epoch", "3", "--batch-size", "8", "--seed", "1", "--config", str(cfg_file)]
    if start_train_and_kill(cmd, run) >= 3:
        pytest.skip("the run finished before it could be killed")
    summary = fit(cfg, tiny_data, run, progress=False)
    assert summary["epochs"] == 3
    a = torch.load(ref / "last.pt", weights_only=True)
    b = torch.load(run / "last.pt", weights_only=True)
    for k in a["state_dict"]:
        assert torch.allclose(a["state_dict"][k].float(), b["state_dict"][k].float(), atol=1e-5), k
    assert a["qat_observers"] and all(torch.allclose(a["qat_observers"][k], b["qat_observers"][k], atol=1e-5)
                                      for k in a["qat_observers"])


@pytest.mark.slow  # about a minute on 2 cores: `make test` runs it, `pytest -m 'not slow'` skips it
def test_cli_export_qat_on_writes_report_section(tiny_run, tiny_data, tmp_path):
    from wakeword.cli import main
    from wakeword.export import OnnxDetector

    out = tmp_path / "m.onnx"
    rc = main(["-q", "export", "--model", str(tiny_run / "best.pt"), "--out", str(out), "--int8", "--streaming",
               "--qat", "on", "--qat-steps", "4", "--data", str(tiny_data)])
    assert rc == 0
    report = json.loads((tmp_path / "m.export_report.json").read_text())
    sec = report["qat"]
    assert sec["mode"] == "on" and sec["ran"] and sec["steps"] == 4
    drops, test = sec["pauc_drop_points"]["test split"], report["accuracy"]["test split"]
    assert drops == {"static": test["pauc_drop_points"], "qat": test["qat_pauc_drop_points"],
                     "qat_own": test["qat_own_pauc_drop_points"]}
    written = report["int8"]["source"]
    assert sec["written"]["int8"].startswith(written) and "test-split pAUC" in sec["written"]["int8"]
    assert (written == "qat") == (test["int8_qat"]["pauc"] > test["int8"]["pauc"])
    qat_file = tmp_path / "m.qat" / "model.int8.onnx"
    assert ((tmp_path / "m.int8.onnx").read_bytes() == qat_file.read_bytes()) == (written == "qat")
    assert (tmp_path / "m.qat" / "best.pt").exists() and (tmp_path / "m.qat" / "last.pt").exists()
    OnnxDetector(tmp_path / "m.int8.onnx")
    # The streaming graph gets its own choice, by its own (hop by hop) test-split pAUC.
    assert set(sec["stream_pauc_drop_points"]["test split"]) == {"static", "qat", "qat_own"}
    assert (report["streaming_int8"]["source"] == "qat") == (test["stream_int8_qat"]["pauc"] > test["stream_int8"]["pauc"])
    assert report["int8_within_0.5_pauc_points"] == (max(
        test["qat_pauc_drop_points" if written == "qat" else "pauc_drop_points"],
        test["stream_qat_pauc_drop_points" if report["streaming_int8"]["source"] == "qat"
             else "stream_pauc_drop_points"]) <= 0.5)


def test_bad_qat_combinations_are_clear_errors(tiny_run, tmp_path, capsys):
    from wakeword.cli import main
    from wakeword.export import export_model
    from wakeword.features.logmel import FeatureConfig
    from wakeword.models.kws import WakeWordModel
    from wakeword.training.checkpoint import save_checkpoint

    ckpt = str(tiny_run / "best.pt")
    assert main(["-q", "export", "--model", ckpt, "--out", str(tmp_path / "a.onnx"), "--qat", "on"]) == 2
    assert "--int8" in capsys.readouterr().err
    assert not (tmp_path / "a.onnx").exists()
    orphan = tmp_path / "orphan.pt"  # a checkpoint that records no data folder
    save_checkpoint(orphan, WakeWordModel("mobilenetv3", {"width": 0.5}, FeatureConfig()), {})
    assert main(["-q", "export", "--model", str(orphan), "--out", str(tmp_path / "b.onnx"), "--int8", "--qat",
                 "on"]) == 2
    err = capsys.readouterr().err
    assert "data folder" in err and "--data" in err
    (tmp_path / "empty").mkdir()
    assert main(["-q", "export", "--model", ckpt, "--out", str(tmp_path / "c.onnx"), "--int8", "--qat", "auto",
                 "--data", str(tmp_path / "empty")]) == 2
    assert "manifest.csv" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown QAT mode"):
        export_model(ckpt, tmp_path / "d.onnx", int8=True, qat="maybe")
    with pytest.raises(SystemExit):
        main(["export", "--model", ckpt, "--out", str(tmp_path / "e.onnx"), "--int8", "--qat", "maybe"])
