"""The openai engine against a scripted local server: request shapes, servers that ignore n / logprobs /
stop, failing requests and a server that is down. Real `vllm serve` is in tests/e2e/test_openai_vllm.py."""

from __future__ import annotations

import math

import pytest

from rsft.core.errors import RsftError
from rsft.core.records import Group, Prompt
from rsft.inputs.data.formats import prompt_ids
from rsft.inputs.modeling import load_tokenizer
from rsft.parts.sampling.base import SamplingParams, sample_seed
from rsft.parts.sampling.openai_engine import OpenAIEngine
from rsft.parts.scoring.base import score_groups
from tests.inputs.serving.fake_server import FakeServer

PROMPTS = [Prompt("a", text="12+3="), Prompt("b", text="4+56=")]
PARAMS = SamplingParams(temperature=0.7, top_p=0.9, top_k=5, max_new_tokens=6, seed=3, round=1)


def engine(server, model_dir, **options):
    return OpenAIEngine.from_path(str(model_dir), base_url=server.base_url, **{"retries": 1, **options})


def seed_of(p, params=PARAMS):
    return (sample_seed(params.seed, params.round, p.id, 0) & 0x3FFFFFFF) + params.first_index


def test_requests_carry_ids_n_seed_and_sampling_settings(model_dir):
    tok = load_tokenizer(str(model_dir))
    with FakeServer(tok, root=str(model_dir)) as server:
        groups = engine(server, model_dir).generate(PROMPTS, 3, PARAMS)
    bodies = sorted(server.bodies, key=lambda b: b["prompt"])
    assert len(bodies) == 2  # one request per prompt: the server honours n
    for p in PROMPTS:
        body = next(b for b in bodies if b["prompt"] == prompt_ids(p, tok))
        assert (body["n"], body["temperature"], body["top_p"], body["top_k"], body["max_tokens"]) == (3, 0.7, 0.9, 5, 6)
        assert body["seed"] == seed_of(p) and body["logprobs"] == min(20, len(tok)) and body["model"] == "m"
    for p, group in zip(PROMPTS, groups):
        assert [s.index for s in group] == [0, 1, 2]
        assert [s.text for s in group] == [server.text_for(seed_of(p) + i) for i in range(3)]
        for s in group:
            assert list(s.token_ids) == tok(s.text, add_special_tokens=False)["input_ids"]
            assert s.logprob == pytest.approx(-0.5 * len(s.token_ids))
            # the two returned logprobs, at T=0.7 and renormalised: p = sigmoid(0.5 / 0.7)
            q = 1 / (1 + math.exp(-0.5 / 0.7))
            assert s.entropy == pytest.approx(-(q * math.log(q) + (1 - q) * math.log(1 - q)))


def test_a_server_that_ignores_n_gets_one_request_per_sample_with_its_own_seed(model_dir):
    tok = load_tokenizer(str(model_dir))
    with FakeServer(tok, honours_n=False, logprobs=False, token_ids=False, root=str(model_dir)) as server:
        groups = engine(server, model_dir).generate(PROMPTS[:1], 4, PARAMS)
    seeds = sorted(b["seed"] for b in server.bodies)
    base = seed_of(PROMPTS[0])
    assert seeds == [base, base + 1, base + 2, base + 3]  # the n=4 request (1 choice back), then one per missing
    assert [s.text for s in groups[0]] == [server.text_for(base + i) for i in range(4)]
    s = groups[0][0]
    assert s.logprob is None and s.entropy is None  # not reported: not measured, never 0
    assert list(s.token_ids) == tok(s.text, add_special_tokens=False)["input_ids"]  # read locally


def test_stop_strings_are_applied_when_the_server_ignores_them(model_dir):
    tok = load_tokenizer(str(model_dir))
    params = SamplingParams(max_new_tokens=6, seed=1, stop=("#",))
    with FakeServer(tok, honours_stop=False, root=str(model_dir)) as server:
        group = engine(server, model_dir).generate(PROMPTS[:1], 2, params)[0]
    assert server.bodies[0]["stop"] == ["#"]
    assert all("#" not in s.text and s.text for s in group)


def test_failed_requests_are_counted_sample_errors_and_never_scored(model_dir):
    tok = load_tokenizer(str(model_dir))
    bad = prompt_ids(PROMPTS[1], tok)
    with FakeServer(tok, root=str(model_dir), fail=lambda body: 500 if body["prompt"] == bad else None) as server:
        groups = engine(server, model_dir, retries=2).generate(PROMPTS, 2, PARAMS)
    assert sum(b["prompt"] == bad for b in server.bodies) == 3  # the first try and 2 retries
    assert all(s.error is None for s in groups[0])
    assert all(s.error and "HTTP 500" in s.error and s.finish_reason == "error" for s in groups[1])
    calls = []

    def scorer(prompts, completions, **kw):
        calls.extend(completions)
        return [1.0] * len(completions)

    scored = score_groups(scorer, [Group(p, tuple(g)) for p, g in zip(PROMPTS, groups)])
    assert len(calls) == 2 and all(c.ok for c in scored[0].scores)
    assert all(not c.ok and c.error.startswith("sampling: failed after 3 attempts: HTTP 500") for c in scored[1].scores)


def test_a_server_that_is_down_is_one_line_naming_it(model_dir):
    tok = load_tokenizer(str(model_dir))
    with FakeServer(tok, root=str(model_dir)) as server:
        eng = engine(server, model_dir)
        url = server.base_url
    with pytest.raises(RsftError) as e:
        eng.generate(PROMPTS, 2, PARAMS)
    assert url in str(e.value) and "cannot be reached" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(RsftError, match="did not answer"):
        OpenAIEngine.from_path(str(model_dir), base_url=url)


def test_a_server_on_another_model_is_said_in_one_line(model_dir, capsys):
    tok = load_tokenizer(str(model_dir))
    with FakeServer(tok, root="/models/something-else") as server:
        engine(server, model_dir)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "serves '/models/something-else'" in err[0]


def test_text_prompts_leave_the_bos_to_the_server(model_dir):
    tok = load_tokenizer(str(model_dir))
    with FakeServer(tok, root=str(model_dir)) as server:
        engine(server, model_dir, prompt_format="text").generate(PROMPTS[:1], 1, PARAMS)
    sent = server.bodies[0]["prompt"]
    assert sent == "12+3=" and tok(sent)["input_ids"] == prompt_ids(PROMPTS[0], tok)  # the server adds one BOS


def test_options_are_checked(model_dir):
    from rsft.core.errors import ConfigError
    from rsft.parts.sampling.engines import check_engine_options

    with pytest.raises(ConfigError, match="sampling.engine_options.base_ur"):
        check_engine_options("openai", {"base_ur": "http://x/v1"})
    with pytest.raises(ConfigError, match="exactly one of base_url"):
        OpenAIEngine.from_path(str(model_dir))


def test_a_server_that_answers_500_then_vanishes_stops_the_stage_rather_than_writing_errors(model_dir):
    """A server shutting down may fail requests with a 500 before it stops listening: the batch must
    not become error samples (they would be written and never redone on resume)."""
    import threading

    tok = load_tokenizer(str(model_dir))
    server = FakeServer(tok, root=str(model_dir))
    server.b["fail"] = lambda body: threading.Thread(target=server.__exit__).start() or 500
    with server:
        eng = engine(server, model_dir, retries=2)
        with pytest.raises(RsftError, match="cannot be reached"):
            eng.generate(PROMPTS[:1], 2, PARAMS)
