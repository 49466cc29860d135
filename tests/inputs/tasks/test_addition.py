from rsft.inputs.tasks.addition import addition_scorer, make_task


def test_splits_are_seeded_and_disjoint():
    a, b = make_task(digits=3, n_train=50, n_eval=20, n_gold=30, seed=1), make_task(3, 50, 20, 30, seed=1)
    assert [p.text for p in a.train] == [p.text for p in b.train]
    texts = [p.text for p in a.train] + [p.text for p in a.eval] + [p.text for p, _ in a.gold]
    assert len(set(texts)) == len(texts) == 100
    assert make_task(3, 50, 20, 30, seed=2).train[0].text != a.train[0].text


def test_gold_completions_verify():
    task = make_task(digits=4, n_train=0, n_eval=0, n_gold=50)
    prompts = [p.text for p, _ in task.gold]
    scores = addition_scorer(prompts, [c for _, c in task.gold], [p.fields["answer"] for p, _ in task.gold])
    assert all(s.value == 1.0 for s in scores)


def test_digits_are_reversed():
    task = make_task(digits=3, n_train=1, n_eval=0, n_gold=0)
    p = task.train[0]
    a, b = p.text[:-1].split("+")
    assert int(a[::-1]) + int(b[::-1]) == p.fields["answer"]


def test_format_failure_is_apart_from_wrong_answer():
    wrong, bad, right, chat = addition_scorer(
        ["", "", "", ""], ["0000", "12a", "9750", [{"role": "assistant", "content": "9750"}]], [579] * 4)
    assert wrong.value == 0.0 and wrong.parts == {"format": 1.0, "correct": 0.0}
    assert bad.value == 0.0 and bad.parts == {"format": 0.0, "correct": 0.0}
    assert right.value == 1.0 and right.answer == "579" and chat.value == 1.0


def test_the_answer_has_exactly_the_prompts_width():
    # 123 + 456 = 579, written "0579" reversed: "9750"; a shorter or longer digit string is not that answer
    prompt = "321+654="
    scores = addition_scorer([prompt] * 5, ["9750", "975", "97500", "97501", "9751"], [579] * 5)
    assert [s.value for s in scores] == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert [s.parts["format"] for s in scores] == [1.0, 0.0, 0.0, 0.0, 1.0]  # the last is a wrong sum


def test_gold_verifies_with_its_prompt_at_every_width():
    for digits in (1, 2, 5):
        task = make_task(digits=digits, n_train=0, n_eval=0, n_gold=20)
        scores = addition_scorer([p.text for p, _ in task.gold], [c for _, c in task.gold],
                                 [p.fields["answer"] for p, _ in task.gold])
        assert all(s.value == 1.0 for s in scores), digits


def test_the_width_comes_from_the_last_operands_or_the_sum_itself():
    for prompt in ("321+654= ", "Q: 321+654="):
        assert [s.value for s in addition_scorer([prompt] * 3, ["9750", "975", "97500"], [579] * 3)] == [1.0, 0, 0]
    bare = addition_scorer([""] * 4, ["975", "9750", "97500", "975000"], [579] * 4)
    assert [s.value for s in bare] == [1.0, 1.0, 0.0, 0.0]


def test_task_params_seed_draws_another_task_and_the_run_seed_is_the_default():
    from rsft.core.config import TaskConfig
    from rsft.inputs.tasks.base import build_task

    cfg = {"name": "addition", "params": {"digits": 2, "n_train": 5, "n_eval": 0, "n_gold": 0}}
    run_seeded = build_task(TaskConfig(**cfg), seed=3)
    own = build_task(TaskConfig(**{**cfg, "params": {**cfg["params"], "seed": 1}}), seed=3)
    assert [p.text for p in run_seeded.train] == [p.text for p in make_task(2, 5, 0, 0, seed=3).train]
    assert [p.text for p in own.train] == [p.text for p in make_task(2, 5, 0, 0, seed=1).train]
