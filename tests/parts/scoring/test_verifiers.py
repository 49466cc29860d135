from __future__ import annotations

import pytest

from rsft.parts.scoring import verifiers as v


def run(scorer, completions, **fields):
    return scorer(prompts=[""] * len(completions), completions=completions, **fields)


def test_gsm8k_answer_with_commas_and_dollars():
    out = run(v.numeric(), ["so #### $1,234", "#### 1234.0", "#### 12", "no number"],
              answer=["#### 1,234"] * 4)
    assert [s.value for s in out] == [1.0, 1.0, 0.0, 0.0]
    assert out[2].parts == {"format": 1.0, "correct": 0.0} and out[3].parts == {"format": 0.0, "correct": 0.0}


def test_fallback_to_last_number_is_configurable():
    assert run(v.numeric(), ["I think 3 then 42"], answer=[42])[0].value == 1.0
    assert run(v.numeric(fallback_last_number=False), ["I think 3 then 42"], answer=[42])[0].parts["format"] == 0.0


def test_tolerance_and_partial_credit():
    assert run(v.numeric(tolerance=0.001), ["#### 3.14"], answer=["3.1416"])[0].value == 0.0
    assert run(v.numeric(tolerance=0.001), ["#### 3.141"], answer=["3.1416"])[0].value == 1.0
    assert run(v.numeric(format_credit=0.1), ["#### 7"], answer=[8])[0].value == 0.1


def test_math_equivalence():
    pytest.importorskip("math_verify")
    out = run(v.math_equiv(), [r"The answer is $\boxed{\frac{1}{2}}$", r"$\boxed{0.5}$", r"$\boxed{3}$", "no idea"],
              answer=[r"\frac{1}{2}"] * 4)
    assert [s.value for s in out] == [1.0, 1.0, 0.0, 0.0]
    assert out[2].parts["format"] == 1.0 and out[3].parts["format"] == 0.0


def test_exact_and_normalized_match():
    assert [s.value for s in run(v.match(mode="exact"), ["Paris", "paris "], answer=["Paris"] * 2)] == [1.0, 0.0]
    assert [s.value for s in run(v.match(), ["  PARIS.", "Lyon"], answer=["paris"] * 2)] == [1.0, 0.0]
    assert run(v.match(), [""], answer=["x"])[0].parts["format"] == 0.0


def test_regex_with_and_without_field():
    r = v.regex(r"Answer:\s*(\w+)", field="answer")
    out = run(r, ["Answer: B", "Answer: C", "I pick B"], answer=["B"] * 3)
    assert [s.value for s in out] == [1.0, 0.0, 0.0] and out[2].parts["format"] == 0.0
    assert run(v.regex(r"^\d{3}$"), ["123", "12"])[0].value == 1.0


def test_flag_must_match_the_prompts_flag():
    f = v.flag()
    out = run(f, ["found flag{s3cret}!", "flag{wrong}", "nothing here",
                  "flag{a} flag{b} flag{c} flag{s3cret}"], flag=["flag{s3cret}"] * 4)
    assert [s.value for s in out] == [1.0, 0.0, 0.0, 0.0]
    assert out[1].parts["format"] == 1.0 and out[2].parts["format"] == 0.0
    assert out[3].parts["candidates"] == 4.0  # spraying guesses does not pay


def test_json_schema():
    pytest.importorskip("jsonschema")
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    out = run(v.json_schema(schema=schema), ['{"age": 3}', '```json\n{"age": 4}\n```', '{"age": "x"}', "{oops"])
    assert [s.value for s in out] == [1.0, 1.0, 0.0, 0.0]
    assert out[2].parts["format"] == 1.0 and out[3].parts["format"] == 0.0
    per_prompt = v.json_schema(schema_field="schema")
    assert run(per_prompt, ["[1]"], schema=['{"type": "array"}'])[0].value == 1.0


def test_missing_field_is_a_clear_error():
    with pytest.raises(KeyError, match="column 'answer'"):
        run(v.numeric(), ["1"])
