"""What the web app trusts: which Host names it answers, who may use it off loopback, how big a request
body may be, and which files it may read. Pure ASGI, so it holds for every route, the static files
included, and with any FastAPI version."""
from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlencode

TOKEN_COOKIE = "ww_token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """'example.com:8765' -> 'example.com'; '[::1]:8765' -> '::1' (lower case)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def allowed_hosts(bind: str, extra: tuple[str, ...] = ()) -> set[str]:
    """Loopback names, the bound address (unless it is a wildcard) and the names given on the command line."""
    hosts = set(LOOPBACK_NAMES) | {h.lower() for h in extra}
    if bind not in ("0.0.0.0", "::", ""):
        hosts.add(host_name(bind) if not bind.startswith("[") else bind.strip("[]"))
    return hosts


def inside(path: str | Path, roots: list[Path]) -> Path | None:
    """``path`` with symlinks resolved if it lies in one of ``roots`` (resolved too), else None."""
    try:
        p = Path(path).expanduser().resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    for r in roots:
        if p == r or r in p.parents:
            return p
    return None


class Guard:
    """ASGI middleware: refuse unknown Host headers (DNS rebinding), require the access token when one is
    set (a non-loopback bind), and stop reading a request body once it passes ``max_body`` bytes."""

    def __init__(self, app, hosts: set[str], token: str | None, max_body: int):
        self.app, self.hosts, self.token, self.max_body = app, hosts, token, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = host_name(headers.get("host", ""))
        if host not in self.hosts:
            return await _plain(send, 400, f"Host '{host}' is not served here. Allowed: {', '.join(sorted(self.hosts))}"
                                           " (add one with `wakeword serve --allowed-host NAME`)")
        if self.token is not None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = (query.get("token") or [""])[0]
            cookie = _cookie(headers.get("cookie", ""), TOKEN_COOKIE)
            if given and secrets.compare_digest(given, self.token):
                # Trade the URL token for a cookie and drop it from the address bar.
                rest = {k: v for k, v in query.items() if k != "token"}
                location = scope["path"] + (("?" + urlencode(rest, doseq=True)) if rest else "")
                return await _plain(send, 303, "token accepted", [
                    (b"location", location.encode()),
                    (b"set-cookie", f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode())])
            if not (cookie and secrets.compare_digest(cookie, self.token)):
                return await _plain(send, 401, "this wakeword UI needs its access token: open the URL with "
                                               "?token=... that `wakeword serve` printed")
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return await _plain(send, 413, f"request body larger than {self.max_body // (1024 * 1024)} MB refused")
        seen = 0
        over = False

        async def limited_receive():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:  # chunked upload without a length: stop reading it here
                    over = True
                    raise BodyTooLarge()
            return message

        started = False

        async def guarded_send(message):
            nonlocal started
            if over:
                return  # the app's answer to a cut-off body is replaced by the 413 below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            pass
        if over and not started:
            await _plain(send, 413, f"request body larger than {self.max_body // (1024 * 1024)} MB refused")


class BodyTooLarge(Exception):
    pass


def _cookie(header: str, name: str) -> str:
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return ""


async def _plain(send, status: int, text: str, headers: list | None = None) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
