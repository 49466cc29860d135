"""An LLM as judge (`scorer: {name: judge, kwargs: {...}}`): for tasks with no verifier.

A judge model, behind any OpenAI-compatible server (`base_url`, or `serve: MODEL_DIR` to have rsft
start `vllm serve` on it), grades each completion with a rubric prompt. The rubric is a template
with ``{prompt}``, ``{completion}`` and any dataset column (``{answer}``...); the user's own replaces
the default. The judge's reply is parsed by `parse`:

- ``number``: the first number in the reply, as the score;
- ``scale10``: the first number, which must lie in 1..10, divided by 10;
- ``yesno``: 1.0 for a reply starting with yes, 0.0 for no;
- any other string: a regular expression whose first group (or whole match) is the number.

A reply that does not parse, or a request that failed after its retries, is an error on that sample,
never a made-up score. The scorer has TRL's reward signature, so it combines with the others (e.g.
gate on a format check, then judge). Greedy decoding by default (``temperature: 0``).

It grades; it does not compare two completions with each other (pairwise judging).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rsft.core.errors import ConfigError, RsftError
from rsft.core.records import Score
from rsft.inputs.data.formats import completion_text
from rsft.inputs.serving.client import Client

RUBRIC = ("Rate how well the response answers the prompt, from 1 (wrong or useless) to 10 (correct and "
          "complete). Reply with the number only.\n\nPrompt: {prompt}\n\nResponse: {completion}\n\nRating:")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def parse_reply(text: str, parse: str) -> float:
    """The score in a judge's reply; ValueError when there is none."""
    reply = text.strip()
    if parse == "yesno":
        word = reply.split()[0].strip(".,!:;").lower() if reply else ""
        if word in ("yes", "no"):
            return 1.0 if word == "yes" else 0.0
        raise ValueError(f"expected yes or no, got {reply[:60]!r}")
    if parse in ("number", "scale10"):
        m = _NUMBER.search(reply)
        if m is None:
            raise ValueError(f"no number in {reply[:60]!r}")
        value = float(m.group())
        if parse == "scale10":
            if not 1 <= value <= 10:
                raise ValueError(f"{value:g} is not on the 1-10 scale")
            return value / 10
        return value
    m = re.search(parse, reply)
    if m is None:
        raise ValueError(f"{parse!r} does not match {reply[:60]!r}")
    return float(m.group(1) if m.groups() else m.group())


class Judge:
    """The scorer `judge` builds; calling it sends one request per completion, concurrently."""

    __name__ = "judge"

    def __init__(self, client: Client, model: str, template: str, parse: str, max_tokens: int,
                 temperature: float, server: Any = None) -> None:
        self.client, self.model, self.template, self.parse = client, model, template, parse
        self.max_tokens, self.temperature, self.server = max_tokens, temperature, server
        # the dataset columns the rubric names: `rsft.parts.scoring.spec.check_scorer` finds them in the data first
        self.template_columns = template_fields(template, "template") - {"prompt", "completion"}

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> list[Score]:
        bodies, out = [], []
        for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
            values = {k: v[i] for k, v in columns.items() if isinstance(v, list) and len(v) == len(completions)}
            text = self.template.format_map({**values, "prompt": completion_text(p) if isinstance(p, list) else p,
                                             "completion": completion_text(c)})
            bodies.append({"model": self.model, "prompt": text, "max_tokens": self.max_tokens,
                           "temperature": self.temperature, "n": 1})
        for reply in self.client.post_many("/completions", bodies):
            if reply.error is not None:
                out.append(Score(None, error=f"judge: {reply.error}"))
                continue
            text = (((reply.body or {}).get("choices") or [{}])[0]).get("text") or ""
            try:
                out.append(Score(parse_reply(text, self.parse), {"judged": 1.0}))
            except ValueError as e:
                out.append(Score(None, error=f"judge reply did not parse: {e}"))
        return out

    def check_server(self) -> None:
        """The judge's server answers /models: asked before any work (`rsft.parts.scoring.spec.check_scorer`), so a
        wrong base_url is not found only after a round was sampled."""
        try:
            self.client.get("/models")
        except RsftError as e:
            raise ConfigError(f"key '{self.client.key}.base_url': {e}; start the judge's server or fix the URL") from None

    def close(self) -> None:
        self.client.close()
        if self.server is not None:
            self.server.stop()


def template_fields(template: str, key: str) -> set[str]:
    """The placeholders of a rubric (``{answer}`` -> answer); a template `str.format` cannot fill is one line."""
    import string

    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as e:
        raise ConfigError(f"key '{key}': not a valid template ({e}); write a literal brace as {{{{ or }}}}") from None
    fields = {re.split(r"[.\[]", n, maxsplit=1)[0] for n in names}
    if "" in fields or any(f.isdigit() for f in fields):
        raise ConfigError(f"key '{key}': positional placeholders ({{}} or {{0}}) have nothing to fill them; name a "
                          "column, {prompt} or {completion}")
    return fields


def judge(base_url: str | None = None, serve: str | None = None, model: str | None = None,
          template: str = RUBRIC, parse: str = "scale10", max_tokens: int = 8, temperature: float = 0.0,
          max_concurrency: int = 8, timeout: float = 120.0, retries: int = 3, api_key_env: str | None = None,
          python: str | None = None, dtype: str = "float32", serve_args: list[str] = (),
          config_key: str = "scorer") -> Judge:
    """The `judge` scorer: a running server (`base_url`, `model`) or one rsft starts (`serve: MODEL_DIR`).
    `config_key` is where the config names it (`rsft.parts.scoring.spec.build_scorer` passes it), for errors.

    Everything is checked before a server starts; `Judge.check_server` asks a running one for its models
    before any work."""
    from rsft.inputs.serving.options import check_client_options, check_serve_python

    kw = f"{config_key}.kwargs"
    if (base_url is None) == (serve is None):
        raise ConfigError(f"key '{kw}': the judge needs exactly one of base_url or serve (a model directory)")
    if "{completion}" not in template:
        raise ConfigError(f"key '{kw}.template': the rubric must contain {{completion}}")
    template_fields(template, f"{kw}.template")
    if parse not in ("number", "scale10", "yesno"):
        try:
            re.compile(parse)
        except re.error as e:
            raise ConfigError(f"key '{kw}.parse': not number, scale10, yesno or a regex ({e})") from None
    check_client_options(kw, base_url if base_url is not None else "http://127.0.0.1/v1", max_concurrency, timeout,
                         retries, api_key_env)
    server = None
    if serve is not None:
        from rsft.inputs.serving.managed import ManagedServer

        if not Path(serve).is_dir():
            raise ConfigError(f"key '{kw}.serve': {serve!r}: no such model directory")
        check_serve_python(f"{kw}.python", python)
        server = ManagedServer(serve, python, dtype, list(serve_args), served_name="judge")
        base_url, model = server.start(), "judge"
    client = Client(base_url, api_key_env, max_concurrency, timeout, retries, key=kw)
    if model is None:
        try:
            served = client.get("/models").get("data") or []
        except RsftError as e:
            client.close()
            raise ConfigError(f"key '{kw}.base_url': {e}; start the judge's server or fix the URL") from None
        if not served:
            raise ConfigError(f"key '{kw}.model': {base_url}/models lists no model; name it")
        model = served[0]["id"]
    return Judge(client, model, template, parse, max_tokens, temperature, server)
