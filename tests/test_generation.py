"""Per-sample reproducible decoding on the tiny in-process model, the decode loop against
model.generate, stopping at the answer line, and the numerics in run manifests."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import LogitsProcessorList

from taloop.core import manifest
from taloop.core.manifest import CPU_FLAGS, build_manifest, onednn_version
from taloop.student.generation import (
    GumbelSampler,
    _decode,
    answer_end,
    generate,
    greedy_tokens,
    sample_seed,
    states_answer,
    through_answer,
)
from taloop.student.models import TINY_RANDOM, free_weights, load_source
from taloop.student.training import TrainExample, chat_prompt, encode
from taloop.tasks.answers import extract, extract_strict

# Different lengths, so each prompt sits under a different amount of left padding
# depending on its neighbours.
PROMPTS = [
    "a",
    "What is 12 + 30?",
    "Tom has three cats and two dogs. How many legs do his pets have in total, counting all of them?",
    "bb",
]
SAMPLING = {"max_new_tokens": 8, "num_samples": 3, "temperature": 1.0, "seed": 7}

# What the taught model learns to answer: a rationale whose answer line is followed by more
# text (holding another number, which lenient extraction must not take), and one with no
# answer line at all.
LESSONS = {
    "Six plus six?": "Six plus six.\nThe answer is 12.\nExtra text that follows, with 7 in it.",
    "Say something.": "No answer here.\nJust words, 3 of them.\nMore words.",
}
ANSWERED, UNANSWERED = LESSONS
# Untaught: the taught model's samples for it wander through pieces of both lessons, some
# stating an answer early, some late, some never.
WANDERING = "Hello?"


@pytest.fixture(scope="module")
def taught() -> tuple[Any, Any]:
    """The tiny model after AdamW has made it recite :data:`LESSONS` (seconds on a CPU)."""
    model, tok = load_source(TINY_RANDOM)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    rows = encode(tok, [TrainExample(p, c) for p, c in LESSONS.items()], 512)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(200):
        optimizer.zero_grad()
        loss = sum(
            model(input_ids=torch.tensor([r["input_ids"]]), labels=torch.tensor([r["labels"]])).loss
            for r in rows
        )
        loss.backward()
        optimizer.step()
        if loss.item() < 0.02:
            break
    model.eval()
    return model, tok


def reference(
    model: Any,
    tok: Any,
    prompts: list[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    num_samples: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    bf16: bool = False,
) -> list[list[str]]:
    """generate as it was before its decode loop: model.generate on K copies of each prompt,
    every row run to EOS or max_new_tokens (benchmarks/decode.py times it too)."""
    tok.padding_side = "left"
    sampling = temperature > 0
    copies = num_samples if sampling else 1
    outputs: list[list[str]] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        enc = tok(
            [chat_prompt(tok, p) for p in chunk], return_tensors="pt", padding=True, add_special_tokens=False
        )
        enc = {k: v.repeat_interleave(copies, dim=0) for k, v in enc.items()}
        processors = LogitsProcessorList()
        if sampling:
            processors.append(
                GumbelSampler([sample_seed(seed, p, j) for p in chunk for j in range(copies)], temperature)
            )
        with torch.inference_mode(), torch.autocast(model.device.type, torch.bfloat16, enabled=bf16):
            out = model.generate(
                **enc, max_new_tokens=max_new_tokens, logits_processor=processors,
                pad_token_id=tok.pad_token_id, do_sample=False, temperature=None, top_p=None, top_k=None,
            )  # fmt: skip
        texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        for i in range(0, len(texts), copies):
            outputs.append(texts[i : i + copies] if sampling else texts[i : i + 1] * num_samples)
    return outputs


def cut(outputs: list[list[str]]) -> list[list[str]]:
    """Each completion through its answer line, as generate returns it with states_answer."""
    return [[through_answer(t, i, states_answer) for t in samples] for i, samples in enumerate(outputs)]


def test_samples_do_not_depend_on_the_batch(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    alone = [generate(model, tok, [p], batch_size=1, **SAMPLING)[0] for p in PROMPTS]
    together = generate(model, tok, PROMPTS, batch_size=4, **SAMPLING)
    in_pairs = generate(model, tok, PROMPTS, batch_size=2, **SAMPLING)
    reordered = generate(model, tok, PROMPTS[::-1], batch_size=3, **SAMPLING)[::-1]
    assert together == alone
    assert in_pairs == alone
    assert reordered == alone


def test_sample_indices_and_seeds_give_different_samples(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    outs = generate(model, tok, PROMPTS, batch_size=4, **SAMPLING)
    assert all(len(set(samples)) == SAMPLING["num_samples"] for samples in outs)
    other_seed = generate(model, tok, PROMPTS, batch_size=4, **{**SAMPLING, "seed": 8})
    assert all(a != b for a, b in zip(outs, other_seed, strict=True))
    # Sample j is the same stream whatever K is: asking for more samples keeps the first ones.
    fewer = generate(model, tok, PROMPTS, batch_size=4, **{**SAMPLING, "num_samples": 2})
    assert fewer == [samples[:2] for samples in outs]


def test_near_zero_temperature_is_greedy(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    greedy = generate(model, tok, PROMPTS, max_new_tokens=8, batch_size=4)
    cold = generate(model, tok, PROMPTS, max_new_tokens=8, batch_size=4, num_samples=2, temperature=1e-7)
    assert cold == [samples * 2 for samples in greedy]
    assert generate(model, tok, PROMPTS, max_new_tokens=8, batch_size=2) == greedy
    assert generate(model, tok, PROMPTS, max_new_tokens=8, batch_size=4, num_samples=3) == [
        samples * 3 for samples in greedy
    ]


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_sampler_draws_from_the_tempered_softmax(temperature: float) -> None:
    rows = 4000
    logits = torch.tensor([math.log(0.5), math.log(0.3), math.log(0.15), math.log(0.05)])
    sampler = GumbelSampler([sample_seed(0, "p", j) for j in range(rows)], temperature)
    picks = sampler(torch.zeros(rows, 1, dtype=torch.long), logits.repeat(rows, 1)).argmax(-1)
    share = torch.bincount(picks, minlength=4).double() / rows
    expected = torch.softmax(logits.double() / temperature, -1)
    # Binomial standard error is at most 0.008 here; the draws are seeded, so this is exact
    # across runs, and 0.03 leaves room for any seeds.
    assert torch.allclose(share, expected, atol=0.03), (share, expected)


def test_greedy_tokens_are_argmax_of_the_float32_scores() -> None:
    inf, nan = float("inf"), float("nan")
    rows = [
        [1.0, 3.0, 3.0, 2.0],  # tied maxima: the first
        [1.0, nan, 5.0, nan],  # NaN counts as the maximum: the first NaN
        [-inf, -inf, -inf, -inf],
        [0.1, 0.1001, 0.1002, -2.0],  # distinct in float32, tied once rounded to bf16
    ]
    torch.manual_seed(0)
    scores = torch.cat([torch.tensor(rows), torch.randn(64, 4).round(decimals=1)])
    for dtype in (torch.float32, torch.bfloat16):
        cast = scores.to(dtype)
        assert torch.equal(greedy_tokens(cast), cast.float().argmax(-1)), dtype
    assert greedy_tokens(scores)[:4].tolist() == [1, 1, 0, 2]


@pytest.mark.parametrize(
    "sampling",
    [{}, SAMPLING, {**SAMPLING, "num_samples": 4, "temperature": 0.7, "seed": 3}],
    ids=["greedy", "sampled", "sampled-k4"],
)
@pytest.mark.parametrize("batch_size", [1, 3, 4])
def test_decode_loop_matches_model_generate(
    tiny: tuple[Any, Any], sampling: dict[str, Any], batch_size: int
) -> None:
    # One prefill per prompt copied to its K samples, and finished rows leaving the batch,
    # give each row the tokens model.generate gives it: texts equal exactly, not within a
    # tolerance.
    model, tok = tiny
    kwargs = {"max_new_tokens": 12, **sampling}
    assert generate(model, tok, PROMPTS, batch_size=batch_size, **kwargs) == reference(
        model, tok, PROMPTS, batch_size=batch_size, **kwargs
    )


@pytest.mark.parametrize(
    ("model_fixture", "temperature"),
    # The random model's tokens are mostly noise (streams must follow their rows); the taught
    # model's greedy tokens follow their context (caches must follow their rows).
    [("tiny", 1.0), ("taught", 0.0)],
)
def test_rows_leave_the_batch_with_their_own_state(
    request: pytest.FixtureRequest, model_fixture: str, temperature: float
) -> None:
    # Rows made to end at different steps leave the batch; the rows left keep their own cache
    # and random stream, so each row's tokens are the start of what model.generate picks for it
    # when every row runs on.
    model, tok = request.getfixturevalue(model_fixture)
    tok.padding_side = "left"
    prompts, copies, steps = [ANSWERED, UNANSWERED, WANDERING], 2, 12
    lengths = [3, 12, 1, 6, 8, 2]  # row i*copies + j: prompt i, sample j
    seeds = [sample_seed(7, p, j) for p in prompts for j in range(copies)]

    def sampler() -> list[GumbelSampler]:  # fresh streams for each decoding
        return [GumbelSampler(seeds, temperature)] if temperature else []

    def stop(rows: list[int], generated: torch.Tensor) -> torch.Tensor:
        return torch.tensor([generated.shape[1] >= lengths[r] for r in rows])

    enc = tok(
        [chat_prompt(tok, p) for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False
    )
    with torch.inference_mode():
        full = model.generate(
            **{k: v.repeat_interleave(copies, dim=0) for k, v in enc.items()}, max_new_tokens=steps,
            logits_processor=LogitsProcessorList(sampler()), pad_token_id=tok.pad_token_id,
            do_sample=False, temperature=None, top_p=None, top_k=None,
        )  # fmt: skip
        left = _decode(model, enc, copies, steps, next(iter(sampler()), None), stop)
    drawn = full[:, enc["input_ids"].shape[1] :]
    assert [t.tolist() for t in left] == [row[:n].tolist() for row, n in zip(drawn, lengths, strict=True)]


def states_number(index: int, text: str) -> bool:
    """The task-aware rule states_answer's docstring suggests, for a number task."""
    return states_answer(index, text) and extract_strict(text, "number") is not None


def test_answer_end_reads_complete_answer_lines_only() -> None:
    # X runs to the end of its line: "1" may still become "12".
    assert answer_end("Six.\nThe answer is 1", 0, states_answer) is None
    assert answer_end("Six.\nThe answer is 12", 0, states_answer) is None
    text = "Six.\nThe answer is 12.\nMore.\nThe answer is 13.\n"
    assert through_answer(text, 0, states_answer) == "Six.\nThe answer is 12.\n"
    assert through_answer("**The answer is 12.**\n\nMore.", 0, states_answer) == "**The answer is 12.**\n"
    # A bare "The answer is" states nothing yet, and a line that only mentions the phrase is
    # prose, not an answer line: neither stops the text, whose last line then answers.
    for text, answer in [
        ("The answer is\n12.\nMore.", "12"),
        ("Room for 'The answer is 3' here.\nThe answer is 4.", "4"),
        ("No answer line.\nAt all.\n", None),
    ]:
        assert through_answer(text, 0, states_answer) == text
        assert extract_strict(text, "number") == answer
    # The default rule stops at any stated X; a task's strict reading waits for a value it
    # reads. Only the latter keeps the lenient answer here.
    words = "The answer is twelve.\nSo 12.\nThe answer is 12.\nTail 5."
    assert through_answer(words, 0, states_answer) == "The answer is twelve.\n"
    assert through_answer(words, 0, states_number) == "The answer is twelve.\nSo 12.\nThe answer is 12.\n"
    assert extract(through_answer(words, 0, states_number), "number") == extract(words, "number") == "12"
    assert extract(through_answer(words, 0, states_answer), "number") is None


def test_stopping_at_the_answer_line_keeps_the_answer(taught: tuple[Any, Any]) -> None:
    model, tok = taught
    prompts = [ANSWERED, UNANSWERED]
    full = generate(model, tok, prompts, max_new_tokens=40, batch_size=2)
    assert full == [[LESSONS[p]] for p in prompts]  # the lessons were learnt, tails included
    stopped = generate(model, tok, prompts, max_new_tokens=40, batch_size=2, answered=states_answer)
    assert stopped == [["Six plus six.\nThe answer is 12.\n"], [LESSONS[UNANSWERED]]]
    for (a,), (b,) in zip(stopped, full, strict=True):
        assert extract(a, "number") == extract(b, "number")
        assert extract_strict(a, "number") == extract_strict(b, "number")
    assert extract(stopped[0][0], "number") == "12" and extract(stopped[1][0], "number") == "3"
    # Cut off before its answer line ends, a row runs to max_new_tokens as before.
    short = generate(model, tok, prompts, max_new_tokens=8, batch_size=2, answered=states_answer)
    assert short == generate(model, tok, prompts, max_new_tokens=8, batch_size=2)
    assert "The answer is" in short[0][0] and not short[0][0].endswith("\n")


def test_rows_finish_independently(taught: tuple[Any, Any]) -> None:
    # Sampled rows stop at their answer lines at different steps (or never) and leave the batch;
    # every row must read as it does alone, and as the full-length model.generate text cut at
    # its answer line.
    model, tok = taught
    prompts = [ANSWERED, WANDERING, UNANSWERED]
    kwargs = {"max_new_tokens": 40, "num_samples": 4, "temperature": 1.0, "seed": 5}
    together = generate(model, tok, prompts, batch_size=3, answered=states_answer, **kwargs)
    alone = [generate(model, tok, [p], batch_size=1, answered=states_answer, **kwargs)[0] for p in prompts]
    assert together == alone
    full = reference(model, tok, prompts, batch_size=3, **kwargs)
    assert together == cut(full)
    wandering = together[1]
    # The case is the one intended: the wandering prompt's samples differ from each other and some
    # of them were stopped short of their full text.
    assert len(set(wandering)) > 1
    assert any(a != b for a, b in zip(wandering, full[1], strict=True))
    assert any(a == b for a, b in zip(wandering, full[1], strict=True))


def test_other_generation_config_falls_back_to_model_generate(
    taught: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A repetition penalty is a logits processor the loop does not apply: model.generate decodes,
    # and still stops each row at its answer line.
    model, tok = taught
    monkeypatch.setattr(model.generation_config, "repetition_penalty", 1.5)
    prompts = [ANSWERED, WANDERING]
    kwargs = {"max_new_tokens": 30, "num_samples": 2, "temperature": 1.0, "seed": 1}
    with caplog.at_level("WARNING", logger="taloop.student.generation"):
        stopped = generate(model, tok, prompts, batch_size=2, answered=states_answer, **kwargs)
    assert "repetition_penalty" in caplog.text
    full = reference(model, tok, prompts, batch_size=2, **kwargs)
    assert stopped == cut(full)
    monkeypatch.undo()
    assert full != reference(model, tok, prompts, batch_size=2, **kwargs)  # the penalty mattered


def test_manifest_records_the_numerics(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    numerics = build_manifest("test", {"seed": 0})["numerics"]
    for key in ("torch_num_threads", "torch_num_interop_threads"):
        assert isinstance(numerics[key], int) and numerics[key] >= 1
    assert numerics["onednn_version"] is None or re.fullmatch(r"\d+(\.\d+)+", numerics["onednn_version"])
    assert numerics["cpu_capability"] is None or isinstance(numerics["cpu_capability"], str)
    flags = numerics["cpu_flags"]
    assert flags is None or set(flags) == set(CPU_FLAGS)
    assert flags is None or all(isinstance(v, bool) for v in flags.values())
    json.dumps(numerics)  # manifests are written as JSON
    monkeypatch.setattr(manifest, "CPUINFO", tmp_path / "missing")
    assert manifest.numerics()["cpu_flags"] is None and manifest.numerics()["cpu_model"] is None
    assert onednn_version("  - Intel(R) MKL-DNN v3.7.1 (Git Hash 8d263e6)") == "3.7.1"
    assert onednn_version("  - oneDNN v3.12.0 (Git Hash 80afa71)") == "3.12.0"
    assert onednn_version("no such line") is None


def test_free_weights_drops_every_weight_without_a_garbage_collection() -> None:
    import gc
    import weakref

    model, _ = load_source(TINY_RANDOM)
    gc.disable()  # the model's reference cycles stay uncollected: only free_weights can free
    try:
        storages = [weakref.ref(t.untyped_storage()) for t in [*model.parameters(), *model.buffers()]]
        free_weights(model)
        assert all(t.device.type == "meta" for t in [*model.parameters(), *model.buffers()])
        assert all(storage() is None for storage in storages)
    finally:
        gc.enable()
