import pytest

from rsft.core.config import load_config
from rsft.core.errors import ConfigError
from rsft.parts.selection import CapRule


def test_defaults_validate():
    cfg = load_config(None)
    assert cfg.sampling.n == 8 and cfg.train.init == "previous"


def test_overrides_are_typed_and_nested(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("rounds: 2\nsampling: {n: 4}\n")
    cfg = load_config(p, ["sampling.temperature=0.7", "train.lora={r: 8}", "eval.k=[1,2]"])
    assert cfg.rounds == 2 and cfg.sampling.n == 4 and cfg.sampling.temperature == 0.7
    assert cfg.train.lora.r == 8 and cfg.eval.k == [1, 2]


def test_rules_are_discriminated_by_name(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("selection:\n  rules:\n    - {rule: cap, n: 3}\n")
    assert load_config(p).selection.rules == [CapRule(rule="cap", n=3)]


@pytest.mark.parametrize("text, needle", [
    ("bogus: 1\n", "unknown key 'bogus'"),
    ("sampling: {tempreature: 1}\n", "unknown key 'sampling.tempreature'"),
    ("rounds: many\n", "key 'rounds'"),
    ("selection: {rules: [{rule: best}]}\n", "unknown rule 'best'"),
    ("train: {init: random}\n", "key 'train.init'"),
    ("rounds: [1\n", "invalid YAML"),
])
def test_bad_config_is_one_line_naming_the_key(tmp_path, text, needle):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert needle in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


def test_bad_override_names_the_key():
    with pytest.raises(ConfigError, match="key 'sampling.n'"):
        load_config(None, ["sampling.n=lots"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["sampling.n"])
