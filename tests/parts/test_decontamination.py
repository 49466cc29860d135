"""Held-out prompts never reach training: exact prompt matches and shared word n-grams are dropped."""

from __future__ import annotations

import json
import string

from rsft.core.records import Group, Prompt, Sample, Score
from rsft.parts.decontamination import Contamination, shared_prompts


def test_exact_prompts_and_ngrams_are_caught():
    held = [Prompt("e0", text="What is the capital of France ?  Answer in one word please")]
    c = Contamination(held, n=5)
    assert c.hits("what is the CAPITAL of france ?  answer in one word please")  # the same prompt, normalised
    assert c.hits("Tell me: what is the capital of France today", "")  # shares a 5-gram
    assert c.hits("Unrelated question", "the capital of france ? answer is Paris")  # via the completion
    assert not c.hits("What is the capital city of Spain", "Madrid")  # words in common, no 5-gram
    assert not Contamination(held, n=None).hits("Tell me: what is the capital of France today")  # exact only


def test_groups_and_rows_lose_only_the_contaminated_samples():
    held = [Prompt("e", text="12+34=")]
    c = Contamination(held, n=13)
    p_bad, p_ok = Prompt("a", text="12+34="), Prompt("b", text="5+6=")
    groups = [Group(p_bad, (Sample("a", 0, "46"),), (Score(1.0),)),
              Group(p_ok, (Sample("b", 0, "11"), Sample("b", 1, "12")), (Score(1.0), Score(1.0)))]
    kept, dropped = c.groups(groups)
    assert dropped == 1 and [g.prompt.id for g in kept] == ["b"] and len(kept[0].samples) == 2
    rows, dropped = c.rows([{"prompt": "12+34=", "completion": "46"}, {"prompt": "5+6=", "completion": "11"}])
    assert dropped == 1 and rows == [{"prompt": "5+6=", "completion": "11"}]
    assert shared_prompts([p_bad, p_ok], held) == 1


def test_a_run_whose_files_share_prompts_says_so_and_never_trains_on_them(tmp_path, model_dir, capsys):
    from rsft.core.config import build_config
    from rsft.loop.rounds import open_run
    from rsft.stages.runner import run_stage

    rows = [{"prompt": f"{a}+{b}=", "answer": a + b, "fake": [str(a + b)]} for a in range(4) for b in range(3)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    cfg = build_config({"name": "d", "output_dir": str(tmp_path / "runs"), "model": {"path": str(model_dir)},
                        "task": {"name": "dataset", "train": str(tmp_path / "train.jsonl"),
                                 "eval": str(tmp_path / "eval.jsonl")},
                        "scorer": "addition", "sampling": {"engine": "fake", "n": 2, "max_new_tokens": 8},
                        "selection": {"rules": [{"rule": "passes", "min": 0.0}]}})
    run = open_run(cfg)
    assert "3 of the 12 train prompts are also held-out prompts" in capsys.readouterr().err
    for stage in ("sample", "score", "select"):
        run_stage(run, 0, stage)
    selected = [json.loads(x) for x in run.round(0).selected.read_text().splitlines()]
    assert {r["prompt"] for r in selected} == {r["prompt"] for r in rows[3:]}
    assert json.loads((run.round(0).path / "selection.json").read_text())["decontaminated"] == 3 * 2


# what real templated data looks like: every prompt carries the same instruction (15 words) and the chat
# template's default system prompt; only the question differs
INSTRUCTION = "Solve the problem step by step and write the final number after four hash marks at the end."
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
QUESTIONS = ["Tom has 3 apples and buys 5 more apples at the market today. How many apples does he have now?",
             "A train leaves at 9 and arrives at 11 after crossing the long river bridge. How long was the trip?",
             "Sara reads 12 pages every evening before she goes to sleep in her room. How many pages in a week?",
             "A box holds 6 eggs and the farmer fills 7 boxes with fresh eggs this morning. How many eggs?"]


def chat(pid, question):
    return Prompt(pid, messages=({"role": "system", "content": SYSTEM},
                                 {"role": "user", "content": f"{question} {INSTRUCTION}"}))


def test_a_shared_instruction_and_system_prompt_are_not_contamination():
    assert len(INSTRUCTION.split()) >= 15
    held = [chat(f"e{i}", q) for i, q in enumerate(QUESTIONS[:2])]
    c = Contamination(held, n=13)
    train = [chat(f"t{i}", q) for i, q in enumerate(QUESTIONS[2:])]
    assert not any(c.hits(p) for p in train)  # the old test dropped every one: the instruction is a 13-gram
    assert not c.hits(train[0], f"Let me think. {INSTRUCTION} The answer is #### 84")  # quoting the template
    assert c.hits(chat("t9", QUESTIONS[1]))  # the same question under the same template: caught
    assert c.hits(Prompt("t8", messages=({"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": QUESTIONS[0]})))  # another system prompt
    assert c.hits(train[1], f"Recall: {QUESTIONS[0][:80]}")  # a completion quoting a held-out question
    text = Contamination([Prompt(f"e{i}", text=f"{q}\n{INSTRUCTION}") for i, q in enumerate(QUESTIONS[:2])], 13)
    assert not text.hits(f"{QUESTIONS[2]}\n{INSTRUCTION}") and text.hits(f"Q: {QUESTIONS[1]}")  # plain text too


def test_text_without_spaces_is_compared_by_ngrams():
    held = [Prompt("zh", text="小明有三个苹果，他又买了五个苹果，现在他一共有几个苹果？"),
            Prompt("py", text="Complete: def is_prime(n):return n>1 and all(n%d for d in range(2,n))")]
    c = Contamination(held, n=13)
    assert c.hits("请回答下面的问题：小明有三个苹果，他又买了五个苹果，现在他一共有几个苹果？谢谢")  # embedded, no spaces
    assert not c.hits("小红有两个梨，她又摘了四个梨，现在她一共有几个梨？")  # another question
    assert c.hits("Fix this code", "def is_prime(n): return n > 1 and all(n % d for d in range(2, n))")  # respaced
    assert not c.hits("Fix this code", "def is_even(n): return n % 2 == 0")


def test_a_templated_chat_dataset_keeps_its_samples_through_the_select_stage(tmp_path):
    """The first real run's failure: GSM8K-style chat rows (a system prompt, the question and one shared
    instruction) lost every passing sample to decontamination. Now only a prompt that is a held-out one is."""
    from rsft.core.config import TinyModelConfig, build_config
    from rsft.inputs.tasks.tiny_model import char_tokenizer, tiny_llama
    from rsft.loop.rounds import open_run
    from rsft.stages.runner import run_stage

    # a tokenizer that can write these prompts, with a chat template and room for them (the fake engine
    # ignores the model; the checks before the run read its tokenizer and context)
    tok = char_tokenizer(string.ascii_letters + string.digits + " .,?#:\n",
                         "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:")
    model_dir = tmp_path / "m"
    tiny_llama(tok, TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, max_position_embeddings=512)
               ).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)

    def row(i, q):
        return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"{q} {INSTRUCTION}"}],
                "answer": "8", "fake": ["#### 8", "#### 9"], "id": f"q{i}"}

    train = [row(i, q) for i, q in enumerate(QUESTIONS)]  # the last one is also held out
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(row(9 + i, q)) + "\n" for i, q in enumerate(QUESTIONS[3:])))
    cfg = build_config({"name": "t", "output_dir": str(tmp_path / "runs"), "model": {"path": str(model_dir)},
                        "task": {"name": "dataset", "train": str(tmp_path / "train.jsonl"), "prompt_column": "messages",
                                 "id_column": "id", "eval": str(tmp_path / "eval.jsonl")},
                        "scorer": {"name": "numeric"}, "sampling": {"engine": "fake", "n": 2, "max_new_tokens": 8},
                        "selection": {"rules": [{"rule": "passes"}]}})
    run = open_run(cfg)
    for stage in ("sample", "score", "select"):
        run_stage(run, 0, stage)
    selection = json.loads(run.round(0).selection_file.read_text())
    assert selection["kept"] == 3 and selection["decontaminated"] == 1  # one '#### 8' each; q3 is held out
