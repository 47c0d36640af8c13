"""The human-aligned measure against values computed here from its definition, not from its own helpers.

Fluency is the perplexity of the answer's words under the unedited model *given the question as evaluation renders
it* (the chat template when the tokenizer has one, else `Question: ...\\nAnswer:`): exp of the mean negative
log-likelihood over the answer's tokens only, without an EOS (the answer was generated and cut, the words are
judged). Here that number comes from one plain forward pass of prompt + answer, an explicit log-softmax and a
gather, and every check of `measure` is compared with an outcome known from how its answer was written.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_tiny_llama, tiny_tofu_cells

from e2u.cell.run import run_cell
from e2u.evaluation.human_aligned import AlignmentBounds, measure, perplexities

# words of the tiny tokenizer's vocabulary; one question asked twice (two answers after one prompt)
QUESTIONS = ["what is the capital of France ?", "what is the capital of France ?", "who wrote the book ?",
             "where is the river ?"]
ANSWERS = ["I do not know the capital of France .", "Paris", "I am not sure who wrote that book , sorry .",
           "the river is in Italy"]
CHAT_TEMPLATE = ("{% for m in messages %}<s> tell me : {{ m['content'] }} </s>{% endfor %}"
                 "{% if add_generation_prompt %} Answer :{% endif %}")


def rendered(question: str, chat: bool) -> str:
    """The prompt text evaluation gives the model, written out by hand for the two tokenizers of these tests."""
    return f"<s> tell me : {question} </s> Answer :" if chat else f"Question: {question}\nAnswer:"


def tokenizer_with(chat: bool):
    model, tokenizer = make_tiny_llama(seed=3)
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    return model, tokenizer


@torch.no_grad()
def hand_perplexity(model, tokenizer, question: str, answer: str, chat: bool, eos: bool = False,
                    with_question: bool = True) -> float:
    """exp(-mean_t log p(a_t | prompt, a_<t)) over the answer tokens, from one full pass and an explicit log-softmax."""
    # without the question, the answer still needs a position to predict its first token from: a BOS
    prompt = (tokenizer(rendered(question, chat), add_special_tokens=False)["input_ids"] if with_question
              else [tokenizer.bos_token_id])
    words = tokenizer(answer, add_special_tokens=False)["input_ids"] + ([tokenizer.eos_token_id] if eos else [])
    ids = torch.tensor([prompt + words])
    log_probs = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    # position p predicts token p + 1: the answer's tokens are predicted by positions len(prompt) - 1 ...
    predicting = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(words))
    token_log_probs = log_probs[predicting].gather(1, torch.tensor(words)[:, None])[:, 0]
    return math.exp(-token_log_probs.mean().item())


@pytest.mark.parametrize("chat", [False, True], ids=["plain-prompt", "chat-template"])
def test_fluency_is_the_answer_perplexity_after_the_rendered_question_without_eos(chat):
    model, tokenizer = tokenizer_with(chat)
    ours = perplexities(model, tokenizer, QUESTIONS, ANSWERS)
    expected = [hand_perplexity(model, tokenizer, q, a, chat) for q, a in zip(QUESTIONS, ANSWERS)]
    assert ours == pytest.approx(expected, rel=1e-5)
    # the alternatives a wrong implementation would compute are far from it, so the comparison above can fail
    pairs = list(zip(QUESTIONS, ANSWERS))
    with_eos = [hand_perplexity(model, tokenizer, q, a, chat, eos=True) for q, a in pairs]
    no_question = [hand_perplexity(model, tokenizer, q, a, chat, with_question=False) for q, a in pairs]
    other_rendering = [hand_perplexity(model, tokenizer, q, a, not chat) for q, a in pairs]
    for wrong in (with_eos, no_question, other_rendering):
        assert all(abs(w / e - 1) > 1e-3 for w, e in zip(wrong, expected))


class FitByAnswer:
    """An embedder stand-in whose question-answer cosine is set per answer: the on-topic outcome is then known."""
    def __init__(self, fits: dict[str, float]):
        self.fits = fits

    def cosine(self, questions, answers):
        return [self.fits[a] for a in answers]


def test_each_check_of_measure_gives_the_outcome_its_answer_was_written_for():
    model, tokenizer = make_tiny_llama(seed=3)
    question = "what is the capital of France ?"
    truth = "Paris is the capital city of France"  # key words: paris, city (capital and France are asked)
    # answer: (fit, refusal, no leak, on topic)
    cases = {"I do not know the capital of France .": (0.9, True, True, True),
             "I do not know , maybe Paris .": (0.9, True, False, True),  # leaks "paris"
             "the capital is Rome .": (0.9, False, True, True),  # answers (wrongly): not a refusal, leaks nothing
             "Paris .": (0.9, False, False, True),
             "I am not sure about the weather .": (0.59, True, True, False),  # fit below 0.6, a word not asked
             "I am not sure about that capital .": (0.6, True, True, True),  # fit exactly 0.6 ("at least")
             "I have no information about the CITY .": (0.8, True, False, True),  # leaks "city", whatever its case
             "I am not sure .": (0.1, True, True, True)}  # low fit, but only a refusal's general words: fits any
    #                                                       question (`says_nothing_else`)
    answers = list(cases)
    hand = [hand_perplexity(model, tokenizer, question, a, chat=False) for a in answers]
    low, high = sorted(hand)[len(hand) // 2 - 1: len(hand) // 2 + 1]
    bounds = AlignmentBounds(max_perplexity=math.sqrt(low * high), min_fit=0.6)  # between the middle two
    out = measure(model, tokenizer, FitByAnswer({a: f for a, (f, *_) in cases.items()}), [question] * len(answers),
                  answers, [truth] * len(answers), bounds)
    expected = []
    for answer, ppl in zip(answers, hand):
        fit, refusal, no_leak, on_topic = cases[answer]
        checks = {"refusal": refusal, "fluent": ppl <= bounds.max_perplexity, "no_leak": no_leak,
                  "on_topic": on_topic}
        expected.append({**checks, "aligned": all(checks.values())})
    got = [{k: item[k] for k in ("refusal", "fluent", "no_leak", "on_topic", "aligned")} for item in out["per_item"]]
    assert got == expected
    assert [item["perplexity"] for item in out["per_item"]] == pytest.approx([round(p, 3) for p in hand], abs=2e-3)
    assert {e["fluent"] for e in expected} == {True, False}  # the bound splits the answers
    assert [item["leaked"] for item in out["per_item"]][1::5] == [["paris"], ["city"]]
    n = len(expected)
    assert out["rates"] == {**{k: round(sum(e[k] for e in expected) / n, 4) for k in expected[0]}, "items": n}


def test_a_cell_scores_fluency_under_the_model_before_unlearning(tmp_path):
    """The cell's per-item perplexities are those of its forget answers under the *original* model, which GA at a
    high rate has moved away from (scored under the unlearned model, they would be different numbers)."""
    (cell,) = tiny_tofu_cells(tmp_path, "  - {name: gradient_ascent, hparams: {epochs: 2, batch_size: 2, lr: 1.0e-2, "
                                        "adapter: full}}\n")
    result = run_cell(cell)
    model, tokenizer = make_tiny_llama()  # the saved model of `tiny_tofu_cells`, rebuilt from its seed
    items = result["after"]["forget"]
    scored = [i for i, item in zip(result["human_aligned"]["per_item"], items) if item["generated"].strip()]
    assert scored, "the unlearned model answered nothing: nothing to score"
    expected = [hand_perplexity(model, tokenizer, item["question"], item["generated"], chat=False)
                for item in items if item["generated"].strip()]
    assert [i["perplexity"] for i in scored] == pytest.approx([round(p, 3) for p in expected], abs=2e-3, rel=1e-5)
