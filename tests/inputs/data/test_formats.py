"""The prompt ids an engine samples from are the ids TRL's SFT trains on, for plain and chat prompts."""

from __future__ import annotations

import pytest

from rsft.core.config import TrainConfig
from rsft.core.records import Prompt
from rsft.inputs.data.formats import prompt_ids, sft_row
from rsft.inputs.modeling import load_tokenizer
from rsft.learning.training.job import TrainJob
from rsft.learning.training.sft import make_sft_trainer
from tests.conftest import make_model_dir

BOS_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ m['role'][0] }}:{{ m['content'] }}\n{% endfor %}"
                "{% if add_generation_prompt %}a:{% endif %}")


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    path = make_model_dir(tmp_path_factory.mktemp("chat") / "m", alphabet="0123456789+=ua:\n")
    tok = load_tokenizer(str(path))
    tok.chat_template = BOS_TEMPLATE
    tok.save_pretrained(path)
    return path


def sft_prompt_ids(model: str, prompt: Prompt, tmp_path) -> list[int]:
    """The ids before the completion in TRL's own tokenized training example."""
    trainer = make_sft_trainer([sft_row(prompt, "12")], TrainJob(model, tmp_path / "w", TrainConfig(max_steps=1)))
    example = trainer.train_dataset[0]
    return [i for i, label in zip(example["input_ids"], example["labels"]) if label == -100]


@pytest.mark.parametrize("prompt", [Prompt("c", messages=({"role": "user", "content": "1+2="},)),
                                    Prompt("t", text="u:1+2=\na:")])
def test_prompt_ids_are_what_sft_trains_on(chat_model, prompt, tmp_path):
    tok = load_tokenizer(str(chat_model))
    ours = prompt_ids(prompt, tok)
    assert ours == sft_prompt_ids(str(chat_model), prompt, tmp_path)
    assert ours.count(tok.bos_token_id) == 1 and ours[0] == tok.bos_token_id  # one BOS, never two
