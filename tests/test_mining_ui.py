"""Hard-negative mining (library and CLI twin) and the web app through its test client."""
from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from wakeword.audio.io import save_wav
from wakeword.dataset.manifest import read_manifest, select
from wakeword.mining.miner import MineConfig, PoolError, build_pool, inject, mine
from wakeword.mining.store import MiningStore


@pytest.fixture()
def workspace(tmp_path, tiny_data, tiny_run, speech_audio) -> Path:
    """A workspace holding its own copy of the data, a run trained on it, a long negative recording."""
    import torch

    ws = tmp_path / "ws"
    shutil.copytree(tiny_data, ws / "data")  # injection writes to the manifest: never the shared fixture
    run = ws / "runs" / "tiny"
    shutil.copytree(tiny_run, run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["data_dir"] = str(ws / "data")
    (run / "config.json").write_text(json.dumps(cfg))
    # A barely trained model scores everything alike; one whose scores vary with speech makes false
    # alarms to mine (an untrained net with BatchNorm statistics from real speech).
    from conftest import responsive_model
    from wakeword.training.checkpoint import save_checkpoint

    old = torch.load(run / "best.pt", weights_only=True)
    save_checkpoint(run / "best.pt", responsive_model(speech_audio, width=0.5),
                    {**old["config"], "data_dir": str(ws / "data")}, metrics=old["metrics"])
    long = np.concatenate([speech_audio] * 4)
    save_wav(ws / "neg" / "talk.wav", long)
    return ws


def _model(ws: Path) -> str:
    return str(ws / "runs" / "tiny" / "best.pt")


def _threshold(ws: Path) -> float:
    """A score the tiny model crosses several times on the long recording (it is barely trained)."""
    from wakeword.audio.io import load_audio
    from wakeword.inference import Detector

    scores, _ = Detector.load(_model(ws)).score_track(load_audio(ws / "neg" / "talk.wav"))
    assert scores.max() - scores.min() > 0.05, "the test model must respond to speech"
    return float(np.floor(np.quantile(scores, 0.6) * 1e4) / 1e4)


def _data_dir(ws: Path) -> str:
    return json.loads((ws / "runs" / "tiny" / "config.json").read_text())["data_dir"]


# ------------------------------------------------------------------ library
def test_pool_refuses_validation_and_test_audio(workspace, tmp_path):
    tiny_data = workspace / "data"
    rows = read_manifest(tiny_data)
    test_clip = tiny_data / select(rows, "test")[0].path
    val_clip = tiny_data / select(rows, "val")[0].path
    for clip in (test_clip, val_clip):
        with pytest.raises(PoolError, match="never includes|same audio"):
            build_pool(tiny_data, [str(clip)])
    copy = tmp_path / "innocent_name.wav"
    shutil.copyfile(test_clip, copy)  # a copy under another name is caught by its hash
    with pytest.raises(PoolError, match="same audio"):
        build_pool(tiny_data, [str(copy)])
    other = tmp_path / "eval_neg.wav"
    shutil.copyfile(workspace / "neg" / "talk.wav", other)
    with pytest.raises(PoolError):
        build_pool(tiny_data, [str(other)], eval_files=[str(other)])
    pool = build_pool(tiny_data, [str(workspace / "neg" / "talk.wav")])
    train_neg = {str((tiny_data / r.path).resolve()) for r in select(rows, "train") if r.label == 0}
    assert str((workspace / "neg" / "talk.wav").resolve()) in pool
    assert set(pool[1:]) <= train_neg
    protected = {str((tiny_data / r.path).resolve()) for r in rows if r.split != "train"}
    assert not protected & set(pool)


def test_mine_confirm_inject_is_idempotent_with_provenance(workspace):
    store = MiningStore(workspace)
    data = Path(_data_dir(workspace))
    # Only the long recording: a whole training clip cut as a candidate already is in the manifest.
    pool = build_pool(data, [str(workspace / "neg" / "talk.wav")], include_training_negatives=False)
    new = mine(store, _model(workspace), pool, MineConfig(min_score=_threshold(workspace), top_k=6, refractory_s=0.3))
    assert 0 < len(new) <= 6
    again = mine(store, _model(workspace), pool, MineConfig(min_score=_threshold(workspace), top_k=6, refractory_s=0.3))
    assert again == []  # the same audio is never queued twice
    cands = store.candidates(status="pending")
    assert [c.score for c in cands] == sorted((c.score for c in cands), reverse=True)
    for c in cands:
        assert Path(c.clip).is_file() and c.duration_s > 0 and c.model.endswith("best.pt")
    store.decide([cands[0].id, cands[1].id], "confirmed")
    store.decide([cands[2].id], "discarded")
    assert store.get(cands[0].id).decided_at
    before = read_manifest(data)
    rows = inject(store, data)
    after = read_manifest(data)
    assert len(rows) == 2 and len(after) == len(before) + 2
    for r in rows:
        assert r.split == "train" and r.kind == "hard_negative" and r.label == 0
        prov = json.loads(r.source)
        assert {"mined_from", "offset_s", "score", "model", "decided_at"} <= set(prov)
        assert (data / r.path).is_file()
    assert inject(store, data) == [] and len(read_manifest(data)) == len(after)  # idempotent
    assert store.counts()["injected"] == 2
    assert store.decide([cands[0].id], "discarded") == 0  # an injected decision is final
    with pytest.raises(KeyError):
        store.decide([999999], "confirmed")


def test_mine_cli_twin(workspace, capsys):
    from wakeword.cli import main

    ws = str(workspace)
    assert main(["-q", "mine", "register", "--workspace", ws, str(workspace / "neg")]) == 0
    assert main(["-q", "mine", "run", "--workspace", ws, "--model", _model(workspace), "--min-score",
                 str(_threshold(workspace)),
                 "--top-k", "4", "--no-train-negatives"]) == 0
    ids = [c.id for c in MiningStore(workspace).candidates()]
    assert 2 <= len(ids) <= 4
    assert main(["-q", "mine", "confirm", "--workspace", ws, str(ids[0])]) == 0
    assert main(["-q", "mine", "discard", "--workspace", ws, str(ids[1])]) == 0
    capsys.readouterr()
    assert main(["-q", "mine", "queue", "--workspace", ws, "--status", "confirmed"]) == 0
    assert f"{ids[0]}\tconfirmed" in capsys.readouterr().out
    n = len(read_manifest(_data_dir(workspace)))
    assert main(["-q", "mine", "inject", "--workspace", ws, "--model", _model(workspace)]) == 0
    assert len(read_manifest(_data_dir(workspace))) == n + 1
    assert main(["-q", "mine", "confirm", "--workspace", ws, "424242"]) == 2


# ------------------------------------------------------------------ web app
LOCAL = "http://127.0.0.1:8765"  # the app answers loopback Host names only (no DNS rebinding)


@pytest.fixture()
def client(workspace):
    from fastapi.testclient import TestClient

    from wakeword.ui.app import create_app

    c = TestClient(create_app(workspace, max_upload_bytes=2_000_000), base_url=LOCAL)
    c.get("/")  # sets the CSRF cookie
    return c


def _csrf(client) -> str:
    return client.cookies.get("ww_csrf")


def _wait(client, jid: int, timeout: float = 180) -> dict:
    t = time.time()
    while time.time() - t < timeout:
        j = client.get(f"/api/jobs/{jid}").json()
        if j["status"] != "running":
            return j
        time.sleep(0.3)
    raise AssertionError(f"job {jid} did not finish")


def test_empty_workspace_says_what_to_do(tmp_path):
    from fastapi.testclient import TestClient

    from wakeword.ui.app import create_app

    c = TestClient(create_app(tmp_path / "empty"), base_url=LOCAL)
    r = c.get("/")
    assert r.status_code == 200 and "No trained models in this workspace yet" in r.text
    for page in ("/benchmark", "/queue", "/sources"):
        assert c.get(page).status_code == 200


def test_pages_and_benchmark_job(client, workspace):
    r = client.get("/")
    assert "runs/tiny/best.pt" in r.text
    r = client.post("/benchmark/run", data={"model": "runs/tiny/best.pt", "set_name": "test", "csrf": _csrf(client)},
                    follow_redirects=False)
    assert r.status_code == 303
    jid = int(r.headers["location"].split("job=")[1].split("&")[0])
    j = _wait(client, jid)
    assert j["status"] == "done", j["message"]
    assert 0 <= j["result"]["metrics"]["pauc"] <= 1
    page = client.get(f"/benchmark?job={jid}")
    assert "bench-metrics" in page.text and "Misclassified clips" in page.text
    assert client.get(f"/jobs/{jid}/det.png").headers["content-type"] == "image/png"
    served = j["result"]["clips"][0]["served"]
    assert client.get(f"/audio/served/{served}").headers["content-type"] == "audio/wav"


def test_mining_flow_through_the_api(client, workspace):
    csrf = _csrf(client)
    r = client.post("/sources/register", data={"path": str(workspace / "neg"), "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    r = client.post("/mine", data={"model": "runs/tiny/best.pt", "min_score": str(_threshold(workspace)),
                                   "top_k": "200", "train_negatives": "on", "csrf": csrf}, follow_redirects=False)
    jid = int(r.headers["location"].split("job=")[1].split("&")[0])
    j = _wait(client, jid)
    assert j["status"] == "done" and j["result"]["new_candidates"] >= 3
    page = client.get("/queue")
    assert page.text.count('class="cand"') == j["result"]["new_candidates"]
    cands = client.get("/api/candidates").json()
    # Confirm one cut from the registered recording (a whole training clip would already be in the manifest).
    ids = sorted((c["id"] for c in cands), key=lambda i: "talk.wav" not in next(
        c["source"] for c in cands if c["id"] == i))
    assert "talk.wav" in next(c["source"] for c in cands if c["id"] == ids[0])
    png = client.get(f"/spectrogram/{ids[0]}.png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    assert client.get(f"/audio/candidate/{ids[0]}").content[:4] == b"RIFF"
    r = client.post("/queue/decide", data={"action": "confirm", "ids": [str(ids[0])], "csrf": csrf},
                    headers={"Accept": "application/json"})
    assert r.json()["counts"]["confirmed"] == 1
    r = client.post("/queue/decide", data={"action": "discard", "ids": [str(i) for i in ids[1:3]], "csrf": csrf},
                    follow_redirects=False)
    assert r.status_code == 303 and MiningStore(workspace).counts()["discarded"] == 2
    data = _data_dir(workspace)
    n = len(read_manifest(data))
    r = client.post("/queue/inject", data={"model": "runs/tiny/best.pt", "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and len(read_manifest(data)) == n + 1
    with open(Path(data) / "manifest.csv") as f:
        last = list(csv.DictReader(f))[-1]
    assert last["split"] == "train" and last["kind"] == "hard_negative"


def test_security_and_bad_input(client, workspace):
    tiny_data = workspace / "data"
    csrf = _csrf(client)
    # No path traversal: audio is addressed by registered ids only.
    for url in ("/audio/candidate/..%2F..%2Fetc%2Fpasswd", "/audio/served/..%2F..%2Fetc%2Fpasswd",
                "/audio/served/99999", "/audio/candidate/99999", "/static/..%2F..%2Fapp.py"):
        assert client.get(url).status_code in (404, 422), url
    # CSRF: no token, a wrong token, another origin.
    form = {"model": "runs/tiny/best.pt", "set_name": "test"}
    assert client.post("/benchmark/run", data=form).status_code == 403
    assert client.post("/benchmark/run", data={**form, "csrf": "forged"}).status_code == 403
    assert client.post("/benchmark/run", data={**form, "csrf": csrf},
                       headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.get("/mine").status_code == 405  # state changes are POST only
    # Unknown model / set: clear errors.
    r = client.post("/benchmark/run", data={"model": "../../etc/passwd", "set_name": "test", "csrf": csrf})
    assert r.status_code == 400 and "unknown model" in r.text
    # Uploads: too large, not audio -> clear error, nothing stored.
    before = MiningStore(workspace).sources()
    big = client.post("/sources/upload", data={"csrf": csrf}, files={"file": ("big.wav", b"\0" * 2_100_000)})
    assert big.status_code == 413
    junk = client.post("/sources/upload", data={"csrf": csrf}, files={"file": ("x.wav", b"not audio at all")})
    assert junk.status_code == 400 and "not decodable audio" in junk.text
    exe = client.post("/sources/upload", data={"csrf": csrf}, files={"file": ("x.exe", b"MZ")})
    assert exe.status_code == 400
    assert MiningStore(workspace).sources() == before and not (workspace / "uploads").exists()
    good = (workspace / "neg" / "talk.wav").read_bytes()[:200_000]
    ok = client.post("/sources/upload", data={"csrf": csrf}, files={"file": ("talk.wav", good)},
                     follow_redirects=False)
    assert ok.status_code == 303 and len(MiningStore(workspace).sources()) == len(before) + 1
    # Registering evaluation audio as a mining source is refused.
    test_clip = tiny_data / select(read_manifest(tiny_data), "test")[0].path
    r = client.post("/sources/register", data={"path": str(test_clip), "csrf": csrf})
    assert r.status_code == 400 and "mining pool never includes" in r.text


def test_a_crashed_job_is_reported_and_leaves_the_queue_consistent(client, workspace):
    store = MiningStore(workspace)
    jid = store.create_job("mine", {"model": "x", "data_dir": "y"})
    store.update_job(jid, pid=2**22 + 12345)  # no such process: the worker died
    j = client.get(f"/api/jobs/{jid}").json()
    assert j["status"] == "failed" and "ended early" in j["message"]
    # A job that fails inside the worker says why.
    r = client.post("/mine", data={"model": "runs/tiny/best.pt", "csrf": _csrf(client)}, follow_redirects=False)
    jid2 = int(r.headers["location"].split("job=")[1].split("&")[0])
    shutil.rmtree(_data_dir(workspace) + "_missing", ignore_errors=True)
    j2 = _wait(client, jid2)
    assert j2["status"] in ("done", "failed")
    assert store.counts()["pending"] == len(store.candidates(status="pending"))


def test_retrain_action_injects_fine_tunes_and_shows_before_after(client, workspace):
    csrf = _csrf(client)
    store = MiningStore(workspace)
    pool = build_pool(workspace / "data", [str(workspace / "neg" / "talk.wav")], include_training_negatives=False)
    ids = mine(store, _model(workspace), pool, MineConfig(min_score=_threshold(workspace), top_k=3))
    store.decide(ids[:2], "confirmed")
    n = len(read_manifest(workspace / "data"))
    r = client.post("/retrain", data={"model": "runs/tiny/best.pt", "epochs": "1", "steps_per_epoch": "2",
                                      "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    jid = int(r.headers["location"].split("job=")[1].split("&")[0])
    j = _wait(client, jid, timeout=300)
    assert j["status"] == "done", j["message"]
    assert j["result"]["injected"] == 2 and len(read_manifest(workspace / "data")) == n + 2
    assert Path(j["result"]["new_model"]).is_file()
    for side in ("before", "after"):
        assert 0 <= j["result"][side]["pauc"] <= 1
    page = client.get(f"/benchmark?job={jid}")
    assert "before-after" in page.text
    # The fine-tuned model is a workspace model like any other.
    assert "retrain_job" in client.get("/").text
    assert client.post("/retrain", data={"model": "runs/tiny/best.pt", "epochs": "0", "csrf": csrf}).status_code == 400
