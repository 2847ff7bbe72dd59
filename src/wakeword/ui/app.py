"""FastAPI app over one workspace folder: Runs, Benchmark (with "Mine Hard Negatives"), Verification
queue, Sources. Server-rendered, no CDN assets; state-changing requests are POSTs checked against a
per-browser CSRF token (double-submit cookie + same-origin check). Only known Host names are answered
(no DNS rebinding), off loopback only with the access token, and every file it registers or serves lies
inside the workspace or a folder allowed on the command line (ui/guard.py)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from fastapi import FastAPI, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from wakeword.defaults import AUDIO_EXTENSIONS
from wakeword.mining.store import MiningStore
from wakeword.ui.guard import Guard, allowed_hosts, inside

HERE = Path(__file__).parent
CSRF_COOKIE = "ww_csrf"
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # one uploaded recording
FORM_OVERHEAD_BYTES = 64 * 1024  # multipart boundaries and the small form fields next to the file
MAX_JOBS = 2  # benchmark / mining / retrain worker processes at once
AUDIO_SUFFIXES = AUDIO_EXTENSIONS  # what may be registered, uploaded and served


def _find(workspace: Path, name: str, max_depth: int) -> list[Path]:
    """Files called ``name`` under the workspace, following symlinked folders (runs linked in)."""
    found = []
    for root, dirs, files in os.walk(workspace, followlinks=True):
        depth = len(Path(root).relative_to(workspace).parts)
        if depth >= max_depth:
            dirs[:] = []
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("clips", "tb", "ui", "mining")]
        if name in files:
            found.append(Path(root) / name)
    return sorted(found)


def discover_models(workspace: Path, max_depth: int = 4) -> list[dict]:
    """Checkpoints (best.pt) under the workspace with what their run recorded."""
    out = []
    for p in _find(workspace, "best.pt", max_depth):
        rel = p.relative_to(workspace)
        if len(rel.parts) > max_depth or "trials" in rel.parts:
            continue
        summary, metrics = p.parent / "train_summary.json", {}
        if summary.exists():
            try:
                s = json.loads(summary.read_text())
                metrics = {"val_pauc": s.get("best", {}).get("val_pauc"), "params": s.get("params"),
                           "epochs": s.get("epochs")}
            except json.JSONDecodeError:
                pass
        cfg_file, run_cfg = p.parent / "config.json", {}
        if cfg_file.exists():
            try:
                run_cfg = json.loads(cfg_file.read_text())
            except json.JSONDecodeError:
                pass
        out.append({"path": str(p), "rel": str(rel), "metrics": metrics, "data_dir": run_cfg.get("data_dir", ""),
                    "arch": run_cfg.get("train", {}).get("arch", "")})
    return out


def discover_studies(workspace: Path) -> list[dict]:
    return [{"dir": str(db.parent), "rel": str(db.parent.relative_to(workspace))}
            for db in _find(workspace, "study.db", 4)]


def _field(value) -> str | None:
    """A text form field (an upload or a missing field counts as none)."""
    return value if isinstance(value, str) else None


def create_app(workspace: str | Path = ".", max_upload_bytes: int = MAX_UPLOAD_BYTES, host: str = "127.0.0.1",
               allowed_host: tuple[str, ...] = (), allow_dirs: tuple[str | Path, ...] = (),
               token: str | None = None, max_jobs: int = MAX_JOBS) -> FastAPI:
    """host: the address the server binds (its name is an allowed Host header); allowed_host: more Host
    names to answer (e.g. the machine's name when bound to 0.0.0.0); allow_dirs: folders outside the
    workspace whose audio may be registered and served; token: required from every client when set."""
    ws = Path(workspace).resolve()
    roots = [ws, *(Path(d).expanduser().resolve() for d in allow_dirs)]
    store = MiningStore(ws)
    app = FastAPI(title="wakeword", docs_url=None, redoc_url=None)
    app.add_middleware(Guard, hosts=allowed_hosts(host, tuple(allowed_host)), token=token,
                       max_body=max_upload_bytes + FORM_OVERHEAD_BYTES)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.state.store, app.state.workspace, app.state.procs = store, ws, {}

    # ------------------------------------------------------------ helpers
    def render(request: Request, name: str, **ctx) -> HTMLResponse:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        ctx.update(request=request, csrf=token, counts=store.counts(), workspace=str(ws),
                   running=[j for j in store.jobs(limit=10) if j["status"] == "running"])
        resp = templates.TemplateResponse(request, name, ctx)
        if request.cookies.get(CSRF_COOKIE) != token:
            resp.set_cookie(CSRF_COOKIE, token, httponly=False, samesite="strict")
        return resp

    def check_csrf(request: Request, token: str | None) -> None:
        cookie = request.cookies.get(CSRF_COOKIE)
        sent = token or request.headers.get("x-csrf-token")
        if not cookie or not sent or not secrets.compare_digest(cookie, sent):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
        origin = request.headers.get("origin")
        if origin and origin.split("://", 1)[-1] != request.headers.get("host", ""):
            raise HTTPException(403, "cross-site request refused")

    def candidate_or_404(cid: int):
        try:
            return store.get(cid)
        except KeyError:
            raise HTTPException(404, "no such candidate") from None

    def model_by_rel(rel: str) -> dict:
        for m in discover_models(ws):
            if m["rel"] == rel:
                if m["data_dir"]:  # its data folder is read (and written, by injection): inside too
                    m["data_dir"] = str(readable(m["data_dir"], "the model's data folder"))
                return m
        raise HTTPException(400, f"unknown model '{rel}': choose one of the workspace's checkpoints")

    def reap_jobs() -> None:
        """A job whose worker process is gone without finishing is marked failed."""
        for j in store.jobs(limit=50):
            if j["status"] != "running":
                continue
            proc = app.state.procs.get(j["id"])
            alive = proc.poll() is None if proc is not None else _pid_alive(j["pid"])
            if not alive:
                store.update_job(j["id"], status="failed", message=j["message"] + " (worker process ended early)")

    def readable(path: str | Path, what: str) -> Path:
        """``path`` resolved (symlinks too) if it lies in the workspace or an allowed folder; else 400."""
        p = inside(path, roots)
        if p is None and not os.path.exists(path):
            raise HTTPException(400, f"{what} {path} does not exist")
        if p is None:
            raise HTTPException(400, f"{what} {path} is outside the workspace {ws} and the allowed folders "
                                     "(start `wakeword serve --allow-dir FOLDER` to allow one)")
        return p

    def start_job(kind: str, args: dict) -> int:
        reap_jobs()
        running = sum(j["status"] == "running" for j in store.jobs(limit=100))
        if running >= max_jobs:
            raise HTTPException(429, f"{running} jobs are running (at most {max_jobs}): wait for one to finish")
        jid = store.create_job(kind, args)
        with open(ws / "ui" / f"worker_{jid}.log", "w") as log:  # the child keeps its own copy of the fd
            proc = subprocess.Popen([sys.executable, "-m", "wakeword.ui.worker", str(ws), str(jid)],
                                    stdout=log, stderr=subprocess.STDOUT, cwd=str(ws))
        app.state.procs[jid] = proc
        store.update_job(jid, pid=proc.pid)
        return jid

    (ws / "ui").mkdir(exist_ok=True)

    # ------------------------------------------------------------ pages
    @app.get("/", response_class=HTMLResponse)
    def runs_page(request: Request):
        return render(request, "runs.html", models=discover_models(ws), studies=discover_studies(ws))

    @app.get("/study/{idx}/pareto.png")
    def study_plot(idx: int):
        studies = discover_studies(ws)
        if not 0 <= idx < len(studies):
            raise HTTPException(404, "no such study")
        import optuna

        from wakeword.hpo.study import load_study, show

        d = Path(studies[idx]["dir"])
        names = [s.study_name for s in optuna.study.get_all_study_summaries(f"sqlite:///{d / 'study.db'}")]
        if not names:
            raise HTTPException(404, "empty study")
        out = ws / "ui" / "studies" / str(idx)
        show(load_study(d, names[0]), out)
        return FileResponse(out / "pareto.png", media_type="image/png")

    @app.get("/benchmark", response_class=HTMLResponse)
    def benchmark_page(request: Request, model: str = "", job: int | None = None):
        reap_jobs()
        models = discover_models(ws)
        jobs = store.jobs(limit=15)
        shown = None
        if job is not None:
            try:
                shown = store.job(job)
            except KeyError:
                raise HTTPException(404, f"no job {job}") from None
        else:
            shown = next((j for j in jobs if j["kind"] in ("benchmark", "retrain") and j["status"] == "done"
                          and (not model or j["args"].get("model", "").endswith(model))), None)
        return render(request, "benchmark.html", models=models, sets=list(store.eval_sets()), jobs=jobs,
                      shown=shown, selected=model)

    @app.get("/queue", response_class=HTMLResponse)
    def queue_page(request: Request, status: str = "pending", min_score: float | None = None, source: str = ""):
        if status not in ("pending", "confirmed", "discarded", "injected", "all"):
            raise HTTPException(400, f"unknown status filter '{status}'")
        cands = store.candidates(status=None if status == "all" else status, min_score=min_score,
                                 source=source or None)
        return render(request, "queue.html", candidates=cands, status=status, min_score=min_score, source=source,
                      models=discover_models(ws))

    @app.get("/sources", response_class=HTMLResponse)
    def sources_page(request: Request):
        return render(request, "sources.html", sources=store.sources(), eval_sets=store.eval_sets())

    # ------------------------------------------------------------ audio and images (registered files only)
    @app.get("/audio/candidate/{cid}")
    def candidate_audio(cid: int):
        c = candidate_or_404(cid)
        if inside(c.clip, roots) is None:
            raise HTTPException(404, "not a registered clip")
        return FileResponse(c.clip, media_type="audio/wav")

    @app.get("/audio/served/{sid}")
    def served_audio(sid: int):
        path = store.served_path(sid)
        # Checked again when served: the store may hold a path registered before this rule, or a link
        # swapped since.
        if path is None or not Path(path).is_file() or inside(path, roots) is None:
            raise HTTPException(404, "not a registered clip")
        from wakeword.audio.io import load_audio, wav_bytes

        return Response(wav_bytes(load_audio(path)), media_type="audio/wav")  # any format -> WAV for browsers

    @app.get("/spectrogram/{cid}.png")
    def spectrogram(cid: int):
        c = candidate_or_404(cid)
        out = ws / "mining" / "spectrograms" / f"{c.sha256}.png"
        if not out.exists():
            _spectrogram_png(c.clip, out)
        return FileResponse(out, media_type="image/png")

    @app.get("/jobs/{jid}/det.png")
    def job_det(jid: int):
        try:
            j = store.job(jid)
        except KeyError:
            raise HTTPException(404, "no such job") from None
        p = (j.get("result") or {}).get("det_png")
        if not p or not Path(p).is_file() or inside(p, roots) is None:
            raise HTTPException(404, "this job has no DET plot")
        return FileResponse(p, media_type="image/png")

    # ------------------------------------------------------------ JSON API (polled by the pages)
    @app.get("/api/jobs/{jid}")
    def api_job(jid: int):
        reap_jobs()
        try:
            return store.job(jid)
        except KeyError:
            raise HTTPException(404, "no such job") from None

    @app.get("/api/candidates")
    def api_candidates(status: str | None = None):
        return [c.__dict__ for c in store.candidates(status=status)]

    # ------------------------------------------------------------ actions (POST + CSRF)
    @app.post("/benchmark/run")
    def run_benchmark(request: Request, model: str = Form(...), set_name: str = Form("test"),
                      csrf: str = Form("")):
        check_csrf(request, csrf)
        m = model_by_rel(model)
        if set_name != "test" and set_name not in store.eval_sets():
            raise HTTPException(400, f"unknown evaluation set '{set_name}'")
        jid = start_job("benchmark", {"model": m["path"], "set": set_name})
        return RedirectResponse(f"/benchmark?job={jid}&model={model}", status_code=303)

    @app.post("/mine")
    def run_mining(request: Request, model: str = Form(...), top_k: int = Form(50), min_score: float = Form(0.5),
                   train_negatives: str = Form(""), csrf: str = Form("")):
        check_csrf(request, csrf)
        m = model_by_rel(model)
        if not m["data_dir"]:
            raise HTTPException(400, "this model does not record its training data folder")
        if not (0.0 <= min_score <= 1.0 and 1 <= top_k <= 1000):
            raise HTTPException(400, "min score must be in [0, 1] and top-k in [1, 1000]")
        jid = start_job("mine", {"model": m["path"], "data_dir": m["data_dir"], "top_k": top_k,
                                 "min_score": min_score, "train_negatives": train_negatives == "on"})
        return RedirectResponse(f"/benchmark?job={jid}&model={model}", status_code=303)

    @app.post("/queue/decide")
    async def decide(request: Request):
        form = await request.form()
        check_csrf(request, _field(form.get("csrf")))
        decision = {"confirm": "confirmed", "discard": "discarded", "reset": "pending"}.get(str(form.get("action")))
        if decision is None:
            raise HTTPException(400, "action must be confirm, discard or reset")
        try:
            ids = [int(str(x)) for x in form.getlist("ids")]
        except ValueError:
            raise HTTPException(400, "candidate ids must be integers") from None
        if not ids:
            raise HTTPException(400, "select at least one candidate")
        try:
            n = store.decide(ids, decision)
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from None
        if request.headers.get("accept", "").startswith("application/json"):
            return JSONResponse({"changed": n, "counts": store.counts()})
        back = str(form.get("back") or "/queue")
        return RedirectResponse(back if back.startswith("/queue") else "/queue", status_code=303)

    @app.post("/queue/inject")
    def inject(request: Request, model: str = Form(...), csrf: str = Form("")):
        check_csrf(request, csrf)
        from wakeword.mining.miner import inject as do_inject

        m = model_by_rel(model)
        rows = do_inject(store, m["data_dir"])
        return RedirectResponse(f"/queue?status=injected&injected={len(rows)}", status_code=303)

    @app.post("/retrain")
    def retrain(request: Request, model: str = Form(...), epochs: int = Form(4), steps_per_epoch: int = Form(0),
                csrf: str = Form("")):
        check_csrf(request, csrf)
        m = model_by_rel(model)
        if not 1 <= epochs <= 100:
            raise HTTPException(400, "epochs must be between 1 and 100")
        args = {"model": m["path"], "data_dir": m["data_dir"], "epochs": epochs}
        if steps_per_epoch > 0:
            args["steps_per_epoch"] = steps_per_epoch
        jid = start_job("retrain", args)
        return RedirectResponse(f"/benchmark?job={jid}&model={model}", status_code=303)

    @app.post("/sources/register")
    def register_source(request: Request, path: str = Form(...), csrf: str = Form("")):
        check_csrf(request, csrf)
        p = Path(path).expanduser()
        if not p.exists():
            raise HTTPException(400, f"no such file or folder: {path}")
        p = readable(p, "path")
        files = [f for f in sorted(p.rglob("*")) if f.suffix.lower() in AUDIO_SUFFIXES] if p.is_dir() else [p]
        files = [readable(f, "file") for f in files]  # a link inside may point out
        from wakeword.mining.miner import PoolError, build_pool

        # Refuse evaluation audio now, not only when mining; check everything before registering anything.
        for data_dir in {m["data_dir"] for m in discover_models(ws) if m["data_dir"]}:
            try:
                build_pool(data_dir, [str(f) for f in files], include_training_negatives=False)
            except PoolError as exc:
                raise HTTPException(400, str(exc)) from None
        for f in files:
            store.add_source(f)
        return RedirectResponse("/sources", status_code=303)

    @app.post("/sources/upload")
    async def upload(request: Request, file: UploadFile, csrf: str = Form("")):
        check_csrf(request, csrf)
        data = await file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"upload larger than {max_upload_bytes // (1024 * 1024)} MB refused")
        suffix = Path(file.filename or "").suffix.lower()
        if suffix not in AUDIO_SUFFIXES:
            raise HTTPException(400, f"unsupported file type '{suffix}'; send {', '.join(sorted(AUDIO_SUFFIXES))}")
        from wakeword.audio.io import AudioError, load_audio

        with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
            tmp.write(data)
            tmp.flush()
            try:
                load_audio(tmp.name)
            except AudioError as exc:
                raise HTTPException(400, f"not decodable audio: {exc}") from None
        digest = hashlib.sha256(data).hexdigest()
        dest = ws / "uploads" / f"{digest}{suffix}"
        dest.parent.mkdir(exist_ok=True)
        dest.write_bytes(data)
        store.add_source(dest)
        return RedirectResponse("/sources", status_code=303)

    @app.post("/evalsets")
    def add_eval_set(request: Request, name: str = Form(...), yaml_path: str = Form(""), positives: str = Form(""),
                     negatives: str = Form(""), csrf: str = Form("")):
        check_csrf(request, csrf)
        if yaml_path:
            if not Path(yaml_path).is_file():
                raise HTTPException(400, f"no YAML at {yaml_path}")
            spec: dict = {"yaml": str(readable(yaml_path, "YAML"))}
        else:
            pos = [str(Path(p.strip()).resolve()) for p in positives.split(",") if p.strip()]
            neg = [str(Path(p.strip()).resolve()) for p in negatives.split(",") if p.strip()]
            for d in pos + neg:
                if not Path(d).is_dir():
                    raise HTTPException(400, f"no folder {d}")
                readable(d, "folder")
            if not pos or not neg:
                raise HTTPException(400, "an evaluation set needs positive and negative folders (or a YAML)")
            spec = {"positives": pos, "negatives": neg}
        from wakeword.mining.miner import eval_set_from_spec

        try:  # what the set will read, links and a YAML's root included, must lie inside too
            es = eval_set_from_spec(name, spec)
        except (ValueError, FileNotFoundError, OSError) as exc:
            raise HTTPException(400, f"evaluation set '{name}' cannot be read: {exc}") from None
        for f in (*es.positives, *es.negatives, *es.noise):
            readable(f, "file")
        try:
            store.add_eval_set(name, spec)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return RedirectResponse("/sources", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if request.headers.get("accept", "").startswith("application/json") or request.url.path.startswith("/api"):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        return HTMLResponse(templates.get_template("error.html").render(status=exc.status_code, detail=exc.detail),
                            status_code=exc.status_code)

    return app


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _spectrogram_png(clip: str, out: Path) -> None:
    """A small log-mel thumbnail of a clip (the project's front end)."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from wakeword.audio.io import load_audio
    from wakeword.features.logmel import FeatureConfig, LogMel

    feat = FeatureConfig()
    audio = load_audio(clip)
    audio = np.pad(audio, (0, max(0, feat.n_fft - len(audio))))
    with torch.no_grad():
        mel = LogMel(feat)(torch.from_numpy(audio.astype(np.float32))[None])[0].numpy()
    fig, ax = plt.subplots(figsize=(2.4, 0.9), dpi=80)
    ax.imshow(mel, origin="lower", aspect="auto", cmap="magma")
    ax.axis("off")
    fig.subplots_adjust(0, 0, 1, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    out.write_bytes(buf.getvalue())
