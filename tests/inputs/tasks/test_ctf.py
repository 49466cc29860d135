"""The built-in ctf task: its episodes, its shell tool in the sandbox, a hostile agent, and loss masking."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from rsft.core.config import TinyModelConfig, TrainConfig
from rsft.core.records import Prompt, Sample, Turn
from rsft.inputs.data.formats import sft_row, trajectory_row
from rsft.inputs.tasks.ctf import CtfEnv, make_task
from rsft.inputs.tasks.tiny_model import build_tiny

SECRET = "host-secret-7c1e"


def test_episodes_chain_from_start_to_the_flag_and_gold_follows_it():
    task = make_task(n_train=50, n_eval=10, n_gold=10, max_depth=3, gold_max_depth=1, seed=4)
    depths = set()
    for p in task.train:
        files, name, hops = p.fields["files"], "start", 0
        while files[name].startswith("see "):  # follow the clues by hand
            name, hops = files[name].split()[1], hops + 1
        assert files[name].strip() == p.fields["flag"] and p.messages[0]["content"] == "files: " + " ".join(sorted(files))
        depths.add(hops)
    assert depths == {1, 2, 3}
    for p, gold in task.gold:  # the warm start sees one hop only
        assert [m["content"] for m in gold if m["role"] == "assistant"][-1] == "submit " + p.fields["flag"]
        assert len([m for m in gold if m["role"] == "assistant"]) == 3
    assert not {p.id for p in task.train} & {p.id for p in task.eval}


def test_the_shell_tool_answers_the_gold_trajectory_exactly():
    """What the sandboxed shell prints is what the gold trajectories show (the warm start teaches the real tool)."""
    task = make_task(n_train=0, n_eval=0, n_gold=3, max_depth=3, gold_max_depth=3, seed=1)
    for p, gold in task.gold:
        env = CtfEnv(p)
        assert env.reset(p) is None
        for action, reply in zip(gold[::2], gold[1::2]):
            obs, done, info = env.step(action["content"])
            assert (obs, done, info.get("exit")) == (reply["content"], False, 0)
        assert env.step(gold[-1]["content"])[1:] == (True, {"submitted": p.fields["flag"]})


def test_tool_output_is_the_same_on_every_call():
    """A resumed run redraws the same trajectories only if the tool answers the same: fixed file times, UTC."""
    p = make_task(n_train=1, n_eval=0, n_gold=0).train[0]
    env = CtfEnv(p)
    first = env.step("ls -og --time-style=+%s; date -d @0 +%Z")[0]
    assert first == env.step("ls -og --time-style=+%s; date -d @0 +%Z")[0]
    assert " 0 start" in first and first.endswith("UTC")  # the uid differs per call: `ls -og` leaves it out


def test_tool_failures_are_observations():
    p = make_task(n_train=1, n_eval=0, n_gold=0).train[0]
    env = CtfEnv(p, timeout=1.0, output_limit=50)
    obs, done, info = env.step("cat nope")
    assert obs == "cat: nope: No such file or directory" and info["exit"] == 1 and not done
    assert env.step("sleep 30")[0] == "error: the command timed out"
    obs = env.step("yes | head -c 100000")[0]
    assert len(obs) <= 50 and set(obs) <= {"y", "\n"}


@pytest.fixture()
def host_secret(tmp_path, monkeypatch):
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    monkeypatch.setenv("RSFT_TEST_SECRET", SECRET)
    return path


def test_a_hostile_agent_is_contained(host_secret, tmp_path, monkeypatch):
    """Nothing the agent does reaches the host. The checks look only at what this test owns: the
    sandbox's own temporary directory (tempfile's, pointed at a private folder here), a leak file and a
    background process named uniquely for this run; never the system-wide /tmp or process table, where
    other jobs come and go."""
    import secrets
    import socket

    host_tmp = tmp_path / "host-tmp"
    host_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(host_tmp))  # where the sandbox makes its host-side files
    token = secrets.token_hex(6)
    sleep_for = f"120.{int(token[:4], 16)}"  # a duration no other process on the machine is sleeping
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    p = make_task(n_train=1, n_eval=0, n_gold=0).train[0]
    env = CtfEnv(p, timeout=2.0, output_limit=400)
    assert env.tool.box.mode == "bwrap"  # this machine has it; docs/agents.md promises it
    attempts = [
        f"cat {host_secret}", f"ls {host_secret.parent}", "env", "cat /proc/1/environ",
        f"grep -r {SECRET} / 2>/dev/null | head -3",
        f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 2); print('NET OPEN')\"",
        f"echo leak > /tmp/rsft-leak-{token}; echo leak > leak-here; ls /tmp",
        f"sleep {sleep_for} & echo started",
    ]
    seen = [env.step(a)[0] for a in attempts]
    assert not any(SECRET in s for s in seen), seen
    assert "NET OPEN" not in seen[5]
    with pytest.raises(socket.timeout):  # nothing reached the host's listener
        listener.accept()
    listener.close()
    assert "No such file" in seen[0] and "No such file" in seen[1]
    assert not Path(f"/tmp/rsft-leak-{token}").exists()
    assert list(host_tmp.iterdir()) == []  # no work directory or output file left behind
    alive = subprocess.run(["pgrep", "-f", f"sleep {sleep_for}"], capture_output=True, text=True).stdout.split()
    assert alive == [], "a background process outlived its tool call"
    # and the next call starts from the episode's files again
    assert env.step("ls")[0].split() == sorted(p.fields["files"])


def test_only_the_actions_are_in_the_loss(tmp_path):
    """TRL's SFTTrainer on a trajectory row: labels cover the assistant's commands and their EOS, never the
    tool output or the prompt. Expected text written out from the messages, not from rsft."""
    from rsft.learning.training.job import TrainJob
    from rsft.learning.training.sft import make_sft_trainer

    task = make_task(n_train=0, n_eval=0, n_gold=2, max_depth=2, gold_max_depth=2, seed=3)
    model = build_tiny(tmp_path / "m", task.alphabet, TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2,
                                                                     max_position_embeddings=256),
                       chat_template=task.chat_template)
    prompt, gold = task.gold[0]
    # the trajectory as the rollout records it: the submit is answered by a last tool message too
    turns = (*(Turn(m["role"], m["content"]) for m in gold), Turn("tool", "submitted"))
    row = trajectory_row(prompt, Sample(prompt.id, 0, gold[-1]["content"], turns=turns))
    assert row["completion"][:-1] == sft_row(prompt, gold)["completion"]
    from rsft.inputs.data.formats import completion_text

    assert completion_text(row["completion"]) == gold[-1]["content"]  # what the model said, not the reply
    trainer = make_sft_trainer([row, sft_row(*task.gold[1])], TrainJob(str(model), tmp_path / "w",
                                                                       TrainConfig(max_steps=1)))
    assert trainer.args.assistant_only_loss
    example = trainer.train_dataset[0]
    tok = trainer.processing_class
    trained = tok.decode([i for i, lab in zip(example["input_ids"], example["labels"]) if lab != -100],
                         skip_special_tokens=False)
    assert trained == "".join(m["content"] + "</s>" for m in gold if m["role"] == "assistant")
    assert "see " not in trained  # the clues the tool printed


def test_a_text_prompt_trajectory_row_opens_with_the_environment_observation():
    s = Sample("p", 0, "b", turns=(Turn("user", "hello"), Turn("assistant", "a"), Turn("tool", "o"),
                                   Turn("assistant", "b")))
    row = trajectory_row(Prompt("p", text="start"), s)
    assert row["prompt"] == [{"role": "user", "content": "start"}, {"role": "user", "content": "hello"}]
    assert [m["role"] for m in row["completion"]] == ["assistant", "tool", "assistant"]


def test_gold_episodes_list_as_many_files_as_the_others():
    """One-hop gold episodes must not be recognisable by a shorter listing (the model would learn that)."""
    task = make_task(n_train=30, n_eval=0, n_gold=30, max_depth=3, decoys=2, gold_max_depth=1)
    sizes = {len(p.fields["files"]) for p in task.train} | {len(p.fields["files"]) for p, _ in task.gold}
    assert sizes == {6}
