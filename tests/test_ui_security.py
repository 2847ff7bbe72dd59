"""The web app serves only its workspace (issue #17): Host names, outside paths, tokens, job cap, uploads."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from wakeword.audio.io import save_wav
from wakeword.mining.store import MiningStore
from wakeword.ui.app import create_app

LOCAL = "http://127.0.0.1:8765"


@pytest.fixture()
def ws(tmp_path) -> Path:
    """A workspace with one recording inside, and a secret recording outside it."""
    w = tmp_path / "ws"
    save_wav(w / "neg" / "talk.wav", np.zeros(8000, dtype=np.float32))
    save_wav(tmp_path / "outside" / "secret.wav", np.full(8000, 0.1, dtype=np.float32))
    return w


def _client(ws: Path, base: str = LOCAL, **kw) -> TestClient:
    c = TestClient(create_app(ws, **kw), base_url=base)
    c.get("/")  # CSRF cookie
    return c


def test_dns_rebinding_host_is_refused(ws):
    c = _client(ws)
    assert c.get("/").status_code == 200
    csrf = c.cookies.get("ww_csrf")
    # A rebinding page at evil.example resolves to 127.0.0.1: its requests carry its own Host and Origin,
    # which agree with each other, so the same-origin and CSRF checks alone let them through.
    evil = {"Host": "evil.example:8765", "Origin": "http://evil.example:8765"}
    assert c.get("/sources", headers=evil).status_code == 400
    r = c.post("/sources/register", data={"path": str(ws / "neg"), "csrf": csrf}, headers=evil)
    assert r.status_code == 400 and "evil.example" in r.text
    assert MiningStore(ws).sources() == []
    for host in ("localhost:8765", "127.0.0.1", "[::1]:8765"):
        assert c.get("/", headers={"Host": host}).status_code == 200, host
    bound = _client(ws, base="http://10.1.2.3:8765", host="10.1.2.3")  # the bound address is allowed
    assert bound.get("/").status_code == 200


def test_paths_outside_the_workspace_are_never_registered_or_served(ws, tmp_path):
    c = _client(ws)
    csrf = c.cookies.get("ww_csrf")
    outside = tmp_path / "outside"
    (ws / "link").symlink_to(outside)  # a link inside the workspace that points out
    (ws / "neg" / "linked.wav").symlink_to(outside / "secret.wav")
    for path in (outside / "secret.wav", outside, "/etc/passwd", ws / "link", ws / "link" / "secret.wav",
                 ws / "neg" / ".." / ".." / "outside"):
        r = c.post("/sources/register", data={"path": str(path), "csrf": csrf})
        assert r.status_code == 400 and "outside the workspace" in r.text, path
    r = c.post("/sources/register", data={"path": str(ws / "neg"), "csrf": csrf})  # holds linked.wav
    assert r.status_code == 400 and "linked.wav" in r.text
    assert MiningStore(ws).sources() == []
    # Evaluation sets: outside folders, and a YAML inside whose root points out.
    r = c.post("/evalsets", data={"name": "x", "positives": str(outside), "negatives": str(ws / "neg"),
                                  "csrf": csrf})
    assert r.status_code == 400 and "outside the workspace" in r.text
    (ws / "set.yaml").write_text(f"root: {outside}\npositives: ['*.wav']\nnegatives: ['*.wav']\n")
    r = c.post("/evalsets", data={"name": "y", "yaml_path": str(ws / "set.yaml"), "csrf": csrf})
    assert r.status_code == 400 and "secret.wav" in r.text
    assert MiningStore(ws).eval_sets() == {}
    # A path that reached the served table anyway (an older store, a benchmark of such a set) is not served.
    store = MiningStore(ws)
    sid = store.allow_serving(outside / "secret.wav")
    assert c.get(f"/audio/served/{sid}").status_code == 404
    inside_id = store.allow_serving(ws / "neg" / "talk.wav")
    assert c.get(f"/audio/served/{inside_id}").content[:4] == b"RIFF"
    # An explicit allow-list on the command line opens a folder.
    allowed = _client(ws, allow_dirs=(outside,))
    assert allowed.get(f"/audio/served/{sid}").content[:4] == b"RIFF"
    r = allowed.post("/sources/register", data={"path": str(outside), "csrf": allowed.cookies.get("ww_csrf")},
                     follow_redirects=False)
    assert r.status_code == 303 and MiningStore(ws).sources() == [str(outside / "secret.wav")]


def test_a_model_whose_data_folder_lies_outside_is_not_mined_or_injected_into(ws, tmp_path):
    import json

    import torch

    from wakeword.features.logmel import FeatureConfig
    from wakeword.models.kws import WakeWordModel
    from wakeword.training.checkpoint import save_checkpoint

    outside = tmp_path / "outside_data"
    outside.mkdir()
    run = ws / "runs" / "dropped"
    torch.manual_seed(0)
    save_checkpoint(run / "best.pt", WakeWordModel("mobilenetv3", {"width": 0.5}, FeatureConfig()), {})
    (run / "config.json").write_text(json.dumps({"data_dir": str(outside), "train": {}}))
    c = _client(ws)
    csrf = c.cookies.get("ww_csrf")
    for url, form in (("/mine", {}), ("/queue/inject", {}), ("/retrain", {"epochs": "1"}),
                      ("/benchmark/run", {"set_name": "test"})):
        r = c.post(url, data={"model": "runs/dropped/best.pt", "csrf": csrf, **form})
        assert r.status_code == 400 and "outside the workspace" in r.text, url
    assert MiningStore(ws).jobs() == []


def test_token_required_when_set(ws):
    c = TestClient(create_app(ws, host="0.0.0.0", allowed_host=("box.lan",), token="s3cret"),
                   base_url="http://box.lan:8765")
    r = c.get("/")
    assert r.status_code == 401 and "token" in r.text
    assert c.get("/?token=wrong").status_code == 401
    r = c.get("/sources?token=s3cret", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/sources" and "ww_token" in r.headers["set-cookie"]
    assert c.get("/sources").status_code == 200  # the cookie now carries it
    c.cookies.clear()
    assert c.get("/api/candidates").status_code == 401


def test_serve_off_loopback_warns_and_requires_a_token(ws):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "wakeword.cli", "serve", "--workspace", str(ws), "--host",
                             "0.0.0.0", "--port", str(port), "--allowed-host", "127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "?token=" in line, line
        token = line.split("?token=")[1].split()[0]
        import httpx

        for _ in range(100):
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/")
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert r.status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/?token={token}", follow_redirects=True).status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)
    assert "WARNING" in proc.stderr.read()


def test_concurrent_jobs_are_capped(ws):
    import torch

    from wakeword.features.logmel import FeatureConfig
    from wakeword.models.kws import WakeWordModel
    from wakeword.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(ws / "runs" / "a" / "best.pt", WakeWordModel("mobilenetv3", {"width": 0.5}, FeatureConfig()),
                    {"data_dir": str(ws / "data")})
    store = MiningStore(ws)
    jid = store.create_job("benchmark", {})
    store.update_job(jid, pid=os.getpid())  # a live worker
    c = _client(ws, max_jobs=1)
    r = c.post("/benchmark/run", data={"model": "runs/a/best.pt", "set_name": "test",
                                       "csrf": c.cookies.get("ww_csrf")})
    assert r.status_code == 429 and "at most 1" in r.text
    assert len(store.jobs()) == 1


def _stream_upload(app, total: int, chunk: int = 64 * 1024, length: int | None = None) -> tuple[int, int]:
    """POST a multipart upload of ``total`` bytes to the ASGI app chunk by chunk (no Content-Length unless
    ``length``); -> (status, bytes the app read)."""
    head = (b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
            b"Content-Type: audio/wav\r\n\r\n")
    state = {"sent": 0, "status": None}

    async def receive():
        if state["sent"] >= total:
            return {"type": "http.request", "body": b"\r\n--xyz--\r\n", "more_body": False}
        body = head if state["sent"] == 0 else b"\0" * chunk
        state["sent"] += chunk
        return {"type": "http.request", "body": body, "more_body": True}

    async def send(message):
        if message["type"] == "http.response.start":
            state["status"] = message["status"]

    headers = [(b"host", b"127.0.0.1:8765"), (b"content-type", b"multipart/form-data; boundary=xyz"),
               (b"cookie", b"ww_csrf=t"), (b"x-csrf-token", b"t")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/sources/upload", "raw_path": b"/sources/upload", "query_string": b"", "root_path": "",
             "headers": headers, "server": ("127.0.0.1", 8765), "client": ("127.0.0.1", 5555)}
    asyncio.run(app(scope, receive, send))
    return state["status"], state["sent"]


def test_upload_size_is_enforced_while_streaming(ws):
    limit = 1_000_000
    app = create_app(ws, max_upload_bytes=limit)
    status, read = _stream_upload(app, total=20_000_000)
    assert status == 413
    assert read < 2 * limit  # stopped near the limit, not after writing 20 MB to a temporary file
    status, read = _stream_upload(app, total=20_000_000, length=20_000_000)
    assert status == 413 and read == 0  # a declared length over the limit is refused before reading
    assert not (ws / "uploads").exists()
