"""A user's own HF model and dataset, sampled through `vllm serve` (engine openai, serve: true) against the
transformers engine on the same config: does the served run learn the way the in-process one does?

The "user's model" is a character-level Llama built from config by this script and saved as an ordinary
HF directory that the config names by path (rsft's `model.path: tiny` is not used); the dataset is
3-digit addition written to JSONL with a gold column, so the run warm-starts on it (dataset task,
`completion_column`), and the reward is the user's own function over the dataset's `sum` column. Both runs share
every setting but `sampling.engine`; each prints held-out greedy pass@1 per round.

    python bench/served.py [--out runs/bench-served] [--rounds 3] [--python .venv-vllm/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def user_model(path: Path) -> Path:
    """A character-level Llama (hidden 128, 4 layers, head size 32, which vLLM's CPU attention supports),
    untrained, saved as a plain HF model directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rsft.inputs.tasks.tiny_model import char_tokenizer

    if (path / "config.json").exists():
        return path
    tok = char_tokenizer("0123456789+=")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def user_data(out: Path) -> tuple[Path, Path]:
    from rsft.inputs.tasks.addition import gold_completion, make_task

    task = make_task(digits=3, n_train=2000, n_eval=300, n_gold=0, seed=5)
    files = []
    for name, prompts in (("train", task.train), ("test", task.eval)):
        f = out / f"{name}.jsonl"
        rows = []
        for p in prompts:
            a, b = (int(x[::-1]) for x in p.text[:-1].split("+"))
            rows.append({"question": p.text, "sum": p.fields["answer"], "gold": gold_completion(a, b, 3)})
        f.write_text("".join(json.dumps(r) + "\n" for r in rows))
        files.append(f)
    return files[0], files[1]


def config(out: Path, name: str, model: Path, train: Path, test: Path, rounds: int, engine: dict) -> dict:
    return {
        "name": name, "output_dir": str(out), "seed": 0, "rounds": rounds, "model": {"path": str(model)},
        "task": {"name": "dataset", "train": str(train), "eval": str(test), "prompt_column": "question",
                 "completion_column": "gold"},
        "scorer": {"name": "addition_sum:score"},
        "warm_start": {"enabled": True, "examples": 1000, "max_steps": 3000, "target_pass1": 0.05,
                       "check_every": 50, "batch_size": 64, "learning_rate": 0.002, "eval_prompts": 200},
        "sampling": {**engine, "n": 8, "max_new_tokens": 6, "batch_size": 256},
        "selection": {"rules": [{"rule": "passes"}, {"rule": "drop_truncated"}, {"rule": "dedup"},
                                {"rule": "cap", "n": 10}]},
        "train": {"init": "previous", "replay": "all_rounds", "max_steps": 400, "batch_size": 64,
                  "learning_rate": 0.001, "save_steps": 1000},
        "eval": {"n": 4, "k": [1, 4]},
    }


SCORER = '''
from rsft.inputs.tasks.addition import addition_scorer


def score(prompts, completions, sum, **kwargs):
    """The user's reward: the addition verifier on the dataset's own `sum` column."""
    return addition_scorer(prompts, completions, sum)
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-served"))
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--only", choices=["transformers", "served"], help="run one engine only")
    ap.add_argument("--python", default=str(ROOT / ".venv-vllm" / "bin" / "python"))
    args = ap.parse_args()
    from rsft.core.config import build_config
    from rsft.loop.rounds import run
    from rsft.core.rundir.rows import round_rows

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "addition_sum.py").write_text(SCORER)
    sys.path.insert(0, str(args.out))
    model = user_model(args.out / "user-model")
    train, test = user_data(args.out)
    engines = {"transformers": {"engine": "transformers"},
               "served": {"engine": "openai", "engine_options": {
                   "serve": True, "python": args.python, "serve_args": ["--enforce-eager", "--max-model-len", "64"]}}}
    curves = {}
    for name, engine in engines.items():
        if args.only and name != args.only:
            continue
        t0 = time.perf_counter()
        run_dir = run(build_config(config(args.out, name, model, train, test, args.rounds, engine)))
        rows = round_rows(run_dir)
        curves[name] = [r["eval"]["greedy_pass@1"] for r in rows]
        print(f"{name}: {time.perf_counter() - t0:.0f} s; held-out greedy pass@1 base then each round: "
              + " -> ".join(f"{x:.1%}" for x in curves[name]))
    for name, curve in curves.items():
        print(f"{name}: +{(curve[-1] - curve[0]) * 100:.1f} points over the warm start")


if __name__ == "__main__":
    main()
