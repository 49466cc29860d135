"""A forwarding proxy in front of a real server that fails some requests on purpose (HTTP 500)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


class FailingProxy:
    """Forwards to `upstream` (…/v1); every `every`-th POST is answered 500 without forwarding, on each
    of its retries too when `sticky` (so a request fails for good and its samples become errors)."""

    def __init__(self, upstream: str, every: int = 3) -> None:
        self.upstream, self.every = upstream.rstrip("/"), every
        self.posts = 0
        self.failed_prompts: set[str] = set()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _relay(self, response: httpx.Response) -> None:
                self.send_response(response.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)

            def do_GET(self) -> None:  # noqa: N802
                self._relay(httpx.get(proxy.upstream + self.path.removeprefix("/v1"), timeout=60))

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                key = json.dumps(json.loads(raw).get("prompt"))
                with proxy.lock:
                    proxy.posts += 1
                    if proxy.posts % proxy.every == 0:
                        proxy.failed_prompts.add(key)
                    fail = key in proxy.failed_prompts
                if fail:
                    data = b'{"error": "injected"}'
                    self.send_response(500)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self._relay(httpx.post(proxy.upstream + self.path.removeprefix("/v1"), content=raw, timeout=120,
                                       headers={"Content-Type": "application/json"}))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FailingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
