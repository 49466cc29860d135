"""A small client for OpenAI-compatible servers (vLLM's `vllm serve`, SGLang, llama.cpp's server,
`transformers serve`): bounded concurrency, retries with backoff, and failures that stay data.

- `post_many` sends requests concurrently (at most `max_concurrency` in flight) and returns one
  `Reply` per request, in order. A connection error or a 5xx is retried `retries` times with
  exponential backoff; a request that still fails is a `Reply` with an error, never an exception,
  so one bad request costs its samples, not the run.
- A server that cannot be reached at all is different: `ServerDown` (a one-line `RsftError` naming
  the base URL) is raised when a request's last attempt found no server (a server shutting down may
  answer 500 first, then vanish), so a stage stops before writing anything for that batch and
  resumes once the server is back.

It speaks HTTP+JSON through httpx and knows nothing about sampling; the engine and the judge
scorer build the request bodies.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from rsft.core.errors import ConfigError, RsftError


class ServerDown(RsftError):
    """The server did not answer at all (connection refused, reset, timed out on connect)."""


@dataclass(frozen=True)
class Reply:
    """The JSON body of a successful request, or why the request failed after its retries."""

    body: dict[str, Any] | None
    error: str | None = None


class Client:
    """Requests to one OpenAI-compatible server, ``base_url`` ending in /v1."""

    def __init__(self, base_url: str, api_key_env: str | None = None, max_concurrency: int = 8,
                 timeout: float = 120.0, retries: int = 3, backoff: float = 0.5, key: str = "engine_options") -> None:
        """`key`: the config section the settings come from (``scorer.kwargs`` for a judge), named in errors."""
        import httpx

        from rsft.inputs.serving.options import check_client_options

        check_client_options(key, base_url, max_concurrency, timeout, retries, api_key_env)
        headers = {"Authorization": f"Bearer {os.environ[api_key_env]}"} if api_key_env else {}
        self.key = key
        self.base_url = base_url.rstrip("/")
        self.max_concurrency, self.retries, self.backoff = max_concurrency, retries, backoff
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                                 limits=httpx.Limits(max_connections=max_concurrency))

    def get(self, path: str) -> dict[str, Any]:
        """GET once (for /models); a server that does not answer is `ServerDown`."""
        import httpx

        try:
            response = self.http.get(path)
            response.raise_for_status()
            return response.json()
        except httpx.HTTPError as e:
            raise ServerDown(f"{self.base_url}{path}: the server did not answer ({type(e).__name__}: {e})") from None

    def post(self, path: str, body: dict[str, Any]) -> Reply:
        """POST with retries on connection errors and 5xx; 4xx is not retried."""
        import httpx

        unreachable, last = False, ""  # `unreachable`: the latest attempt found no server at all
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self.http.post(path, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError) as e:
                unreachable, last = True, f"{type(e).__name__}: {e}"
                continue
            except httpx.HTTPError as e:  # a read timeout and the like: the server is there but slow
                unreachable, last = False, f"{type(e).__name__}: {e}"
                continue
            if response.status_code >= 500:
                unreachable, last = False, f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            if response.status_code >= 400:
                return Reply(None, f"HTTP {response.status_code}: {response.text[:300]}")
            try:
                return Reply(response.json())
            except ValueError:
                return Reply(None, f"the server's reply is not JSON: {response.text[:200]!r}")
        if unreachable:  # e.g. a 500 from a server shutting down, then no server: the stage stops, to resume
            raise ServerDown(f"{self.base_url}: the server cannot be reached ({last}); start it, or fix "
                             f"{self.key}.base_url, and run again to resume")
        return Reply(None, f"failed after {self.retries + 1} attempts: {last}")

    def post_many(self, path: str, bodies: list[dict[str, Any]]) -> list[Reply]:
        """POST every body, at most `max_concurrency` at once; replies in the order of `bodies`."""
        if len(bodies) <= 1:
            return [self.post(path, b) for b in bodies]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(bodies))) as pool:
            return list(pool.map(lambda b: self.post(path, b), bodies))

    def close(self) -> None:
        self.http.close()


def check_reachable(key: str, base_url: str, api_key_env: str | None = None, timeout: float = 10.0) -> None:
    """A running server answers /models (what the engine and the judge ask first), before any work: a wrong
    `base_url` is one line naming `key`.base_url, not a failure after the base model was built."""
    client = Client(base_url, api_key_env, timeout=timeout, key=key)
    try:
        client.get("/models")
    except ServerDown as e:
        raise ConfigError(f"key '{key}.base_url': {e}; start the server or fix the URL") from None
    finally:
        client.close()
