"""Screenshots of every page of the web app, driven through headless Chromium like a user would.

    python scripts/ui_screenshots.py --model work/demo/run/best.pt --out docs/img [--pool DIR_OR_GLOB ...]

Builds a scratch workspace (work/ui_screenshots) holding a link to the model's run, registers the pool
files as negative sources, then: Runs page -> Benchmark (runs a benchmark on the test split) -> "Mine
Hard Negatives" -> Verification queue (confirms one candidate, discards one) -> Sources. Nothing is
injected, so the model's data set is left as it is.
"""
from __future__ import annotations

import argparse
import glob
import shutil
import threading
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="work/demo/run/best.pt")
    ap.add_argument("--out", default="docs/img")
    ap.add_argument("--workspace", default="work/ui_screenshots")
    ap.add_argument("--study", help="an HPO study folder to show on the Runs page (linked into the workspace)")
    ap.add_argument("--pool", nargs="*", default=["../shared/data/real/debian/asterisk_en_allison/[a-c]*.flac"])
    ap.add_argument("--min-score", type=float, default=0.3)
    ap.add_argument("--port", type=int, default=8799)
    a = ap.parse_args()

    import uvicorn
    from playwright.sync_api import expect, sync_playwright

    from wakeword.mining.store import MiningStore
    from wakeword.ui.app import create_app

    ws = Path(a.workspace)
    if ws.exists():
        shutil.rmtree(ws)
    (ws / "runs").mkdir(parents=True)
    (ws / "runs" / "demo").symlink_to(Path(a.model).resolve().parent)
    if a.study:
        (ws / "hpo").symlink_to(Path(a.study).resolve())
    store = MiningStore(ws)
    for pattern in a.pool:
        for f in sorted(glob.glob(pattern)):
            store.add_source(f)
    srv = uvicorn.Server(uvicorn.Config(create_app(ws), host="127.0.0.1", port=a.port, log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{a.port}"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(url + "/")
        page.screenshot(path=str(out / "ui_runs.png"), full_page=True)
        page.goto(url + "/benchmark")
        page.click("#run-benchmark")
        expect(page.locator("#bench-metrics")).to_be_visible(timeout=600_000)
        page.screenshot(path=str(out / "ui_benchmark.png"), full_page=True)
        page.fill("#min-score", str(a.min_score))
        page.uncheck("#train-negatives")  # registered sources only: quick
        page.click("#mine-button")
        expect(page.locator("#mine-result")).to_be_visible(timeout=600_000)
        page.click("#nav-queue")
        rows = page.locator("tr.cand")
        if rows.count() >= 2:
            page.click("tr.cand >> nth=0 >> button.confirm")
            page.click("tr.cand >> nth=1 >> button.discard")
            page.wait_for_timeout(500)
        page.screenshot(path=str(out / "ui_queue.png"), full_page=False)
        page.goto(url + "/sources")
        page.screenshot(path=str(out / "ui_sources.png"), full_page=True)
        browser.close()
    srv.should_exit = True
    print(f"screenshots in {out}: ui_runs.png ui_benchmark.png ui_queue.png ui_sources.png")


if __name__ == "__main__":
    main()
