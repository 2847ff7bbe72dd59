"""One real-browser test: headless Chromium (Debian's, installed by scripts/setup.sh) clicks through
"Mine Hard Negatives" -> verification queue -> confirm / discard -> inject, and checks that the training
manifest grew by exactly the confirmed clip. Set WAKEWORD_SCREENSHOTS=docs/img to keep the screenshots."""
from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from test_mining_ui import _threshold, workspace  # noqa: F401  (the same workspace fixture)

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture()
def server(workspace):  # noqa: F811
    import uvicorn

    from wakeword.ui.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(workspace), host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(timeout=10)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium missing: run scripts/setup.sh")
@pytest.mark.slow  # about a minute on 2 cores: `make test` runs it, `pytest -m 'not slow'` skips it
def test_mine_confirm_discard_inject_in_a_real_browser(server, workspace, tmp_path):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    from wakeword.dataset.manifest import read_manifest
    from wakeword.mining.store import MiningStore

    shots = Path(os.environ.get("WAKEWORD_SCREENSHOTS", tmp_path / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    data_dir = workspace / "data"
    MiningStore(workspace).add_source(workspace / "neg" / "talk.wav")
    n_before = len(read_manifest(data_dir))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(server + "/")
        expect(page.locator("#models")).to_contain_text("runs/tiny/best.pt")
        page.screenshot(path=str(shots / "ui_runs.png"), full_page=True)

        page.goto(server + "/benchmark")
        page.fill("#min-score", f"{_threshold(workspace):.4f}")
        page.click("#mine-button")
        expect(page.locator("#mine-result")).to_be_visible(timeout=180_000)  # the page reloads when the job ends
        expect(page.locator("#mine-result")).to_contain_text("new candidates")
        page.screenshot(path=str(shots / "ui_benchmark.png"), full_page=True)

        page.click("#nav-queue")
        rows = page.locator("tr.cand")
        expect(rows.first).to_be_visible()
        assert rows.count() >= 2
        talk = page.locator("tr.cand", has_text="talk.wav")
        confirm_id = talk.first.get_attribute("data-id")
        other = page.locator(f"tr.cand:not([data-id='{confirm_id}'])").first
        discard_id = other.get_attribute("data-id")
        page.click(f"button.confirm[data-id='{confirm_id}']")
        expect(page.locator(f"tr.cand[data-id='{confirm_id}'] .status")).to_have_text("confirmed")
        page.click(f"button.discard[data-id='{discard_id}']")
        expect(page.locator(f"tr.cand[data-id='{discard_id}'] .status")).to_have_text("discarded")
        page.screenshot(path=str(shots / "ui_queue.png"), full_page=True)

        page.click("#inject-button")
        expect(page.locator("tr.cand")).to_have_count(1)  # the injected view lists the one injected clip
        page.goto(server + "/sources")
        expect(page.locator("#sources")).to_contain_text("talk.wav")
        page.screenshot(path=str(shots / "ui_sources.png"), full_page=True)
        browser.close()

    store = MiningStore(workspace)
    assert store.get(int(confirm_id)).injected_at and store.get(int(discard_id)).status == "discarded"
    rows_after = read_manifest(data_dir)
    assert len(rows_after) == n_before + 1
    added = rows_after[-1]
    assert added.kind == "hard_negative" and added.split == "train"
    assert added.sha256 == store.get(int(confirm_id)).sha256
