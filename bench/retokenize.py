"""How often training on decoded text trains on other tokens than the ones sampled, on the real model.

Samples K completions for GSM8K test questions from SmolLM2-135M-Instruct (the `make model` checkpoint,
CTranslate2 float32, chat prompts with the template's system prompt), then builds each row's training
tokens both ways, with TRL's own SFTTrainer doing the tokenizing:
- before (text): the row as {prompt, completion} text; TRL renders prompt and prompt + completion through
  the chat template and takes the completion from where they diverge;
- after (ids): the row with the sampled `completion_ids` (rsft.learning.training.tokens).
A row mismatches when its completion's training ids differ from the sampled ids (plus <|im_end|>). Prints
the rates and where the first difference falls.

    .venv/bin/python bench/retokenize.py [--prompts 48] [--n 4] [--max-new-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("RSFT_CACHE", str(ROOT / ".cache" / "rsft"))
GGUF = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=48)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args()
    from rsft.core.config import TrainConfig
    from rsft.core.records import Prompt
    from rsft.inputs.data.formats import prompt_ids
    from rsft.inputs.gguf import convert_gguf
    from rsft.learning.training.job import TrainJob
    from rsft.learning.training.sft import make_sft_trainer
    from rsft.parts.sampling.base import SamplingParams
    from rsft.parts.sampling.ctranslate2_engine import CTranslate2Engine
    from rsft.stages.select_rows import sample_row

    model = convert_gguf(GGUF)
    questions = [json.loads(x)["question"] for x in GSM8K.read_text().splitlines()[: args.prompts]]
    prompts = [Prompt(str(i), messages=({"role": "user", "content": q + "\nEnd with '#### <number>'."},))
               for i, q in enumerate(questions)]
    engine = CTranslate2Engine.from_path(str(model), compute_type="float32")
    groups = engine.generate(prompts, args.n, SamplingParams(temperature=1.0, max_new_tokens=args.max_new_tokens,
                                                             seed=1))
    samples = [(p, s) for p, g in zip(prompts, groups) for s in g if s.finish_reason == "stop"]
    rows = [{**sample_row(p, s), "prompt_id": p.id} for p, s in samples]
    tok = engine.tokenizer
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(max_steps=1, batch_size=1, max_length=4096)
        text = make_sft_trainer([{k: v for k, v in r.items() if k != "completion_ids"} for r in rows],
                                TrainJob(str(model), Path(tmp) / "a", cfg, label=None)).train_dataset
        ids = make_sft_trainer(rows, TrainJob(str(model), Path(tmp) / "b", cfg, label=None)).train_dataset
    where = {"boundary": 0, "inside": 0}
    before = after = 0
    for (p, s), a, b in zip(samples, text, ids):
        want = list(s.token_ids)  # the sampled completion, ending with <|im_end|>
        for got, label in ((a, "text"), (b, "ids")):
            comp = [t for t, m in zip(got["input_ids"], got["labels"]) if m != -100]
            if label == "text":
                comp = comp[: len(want)] if comp[len(want):] == tok("\n", add_special_tokens=False)["input_ids"] \
                    else comp  # the template writes "\n" after <|im_end|>; TRL trains on it too
            if comp != want:
                if label == "text":
                    before += 1
                    head = prompt_ids(p, tok)
                    first = next((k for k, (x, y) in enumerate(zip(got["input_ids"][len(head):], want)) if x != y), 0)
                    where["boundary" if first == 0 else "inside"] += 1
                else:
                    after += 1
    n = len(samples)
    print(f"{n} stopped samples of {len(prompts)} GSM8K prompts x K={args.n} ({engine.name} {engine.precision})")
    print(f"before (TRL tokenizes the text): {before}/{n} = {before / n:.1%} rows train on other ids "
          f"than sampled (first difference at the prompt/completion boundary: {where['boundary']}, inside: "
          f"{where['inside']})")
    print(f"after (sampled ids): {after}/{n} = {after / n:.1%}")
    sys.exit(0 if after == 0 else 1)


if __name__ == "__main__":
    main()
