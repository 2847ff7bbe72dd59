"""`wakeword serve`: the web app."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_serve(a: argparse.Namespace) -> int:
    import secrets

    import uvicorn

    from wakeword.ui.app import create_app
    from wakeword.ui.guard import is_loopback

    token = a.token
    if not is_loopback(a.host):
        token = token or secrets.token_urlsafe(18)
        print(f"WARNING: serving on {a.host}, reachable from other machines: anyone who can reach it and has "
              "the token can read the workspace's audio and start jobs. Prefer --host 127.0.0.1 (an SSH tunnel).",
              file=sys.stderr)
        if a.host in ("0.0.0.0", "::") and not a.allowed_host:
            print("WARNING: bound to every address: give the name clients use with --allowed-host NAME "
                  "(other Host headers are refused)", file=sys.stderr)
    app = create_app(a.workspace, host=a.host, allowed_host=tuple(a.allowed_host or ()),
                     allow_dirs=tuple(a.allow_dir or ()), token=token, max_jobs=a.max_jobs)
    url = f"http://{a.host}:{a.port}/" + (f"?token={token}" if token else "")
    print(f"wakeword UI on {url} (workspace {Path(a.workspace).resolve()})")
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    sv = sub.add_parser("serve", help="the web app: runs, benchmarks, hard-negative mining")
    sv.add_argument("--workspace", default=".", help="folder with runs, data and the UI state (default: here)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8765)
    sv.add_argument("--allowed-host", action="append",
                    help="another Host name clients use (repeatable; loopback names and --host are always allowed)")
    sv.add_argument("--allow-dir", action="append",
                    help="a folder outside the workspace whose audio may be registered and served (repeatable)")
    sv.add_argument("--token", default=None,
                    help="access token every client must give (default: none on loopback, a random one otherwise)")
    sv.add_argument("--max-jobs", type=int, default=2, help="benchmark / mining / retrain jobs at once (default 2)")
    sv.set_defaults(func=cmd_serve)
