"""A scripted OpenAI-compatible server on 127.0.0.1, for the request shapes and error paths of the client.

Its completions are deterministic functions of the request (seed and choice index), so a test can say
exactly what rsft must have written. Real vLLM is tested in tests/vllm and tests/e2e/test_openai_vllm.py.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeServer:
    """`behaviour` keys: honours_n (bool), logprobs (bool), token_ids (bool), honours_stop (bool),
    fail (callable(body) -> int | None: an HTTP status to answer with), root (str),
    reply (callable(body) -> str: the text of every choice, for a judge)."""

    def __init__(self, tokenizer: Any, **behaviour: Any) -> None:
        self.tokenizer, self.b = tokenizer, {"honours_n": True, "logprobs": True, "token_ids": True,
                                             "honours_stop": True, "fail": None, "root": "m", "reply": None,
                                             **behaviour}
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._send(200, {"data": [{"id": "m", "root": server.b["root"]}]})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.bodies.append(body)
                status = server.b["fail"](body) if server.b["fail"] else None
                if status:
                    self._send(status, {"error": "scripted failure"})
                    return
                self._send(200, server.completion(body))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def text_for(self, seed: int) -> str:
        """What the 'model' writes for a seed: digits of it, then '#', then more digits (so a stop '#' cuts)."""
        return f"{seed % 97}#{seed % 13}"

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        n = body.get("n", 1) if self.b["honours_n"] else 1
        choices = []
        for i in range(n):
            text = self.b["reply"](body) if self.b["reply"] else self.text_for(body["seed"] + i)
            if self.b["honours_stop"] and body.get("stop"):
                cut = min((text.find(s) for s in body["stop"] if s in text), default=-1)
                text = text[:cut] if cut >= 0 else text
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] if self.tokenizer else []
            choice: dict[str, Any] = {"index": i, "text": text, "finish_reason": "stop"}
            if self.b["token_ids"]:
                choice["token_ids"] = ids
            if self.b["logprobs"] and body.get("logprobs"):
                choice["logprobs"] = {
                    "tokens": [f"token_id:{t}" for t in ids],
                    "token_logprobs": [-0.5] * len(ids),
                    "top_logprobs": [{f"token_id:{t}": -0.5, "token_id:0": -1.0} for t in ids],
                }
            choices.append(choice)
        return {"id": "x", "object": "text_completion", "choices": choices}

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
