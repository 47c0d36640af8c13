"""The metrics of Editing as Unlearning (PISTOL harness) against hand computations, and the fast ranks
(ranked while `greedy_continue` decodes) against the plain ones (from `generate`'s logits)."""

import math
import random

import pytest
import torch
from conftest import make_tiny_llama

from e2u.data.schema import QARecord
from e2u.evaluation import paper_metrics
from e2u.evaluation.aggregates import aggregates
from e2u.evaluation.evaluate import evaluate_records, evaluate_records_reference, rank_targets, summarise
from e2u.evaluation.greedy import greedy_continue
from e2u.evaluation.token_ranks import ranks_along_generate, ranks_in_logits
from e2u.model.kv_context import prefill
from e2u.model.prompts import encode_answer, question_ids

# --- ranks on fixed logits ---------------------------------------------------------------------------------


def test_rank_is_one_plus_the_entries_with_a_strictly_larger_logit():
    logits = torch.zeros((4, 150))
    logits[0, 7] = 3.0  # the largest: rank 1
    logits[1, :2], logits[1, 7] = 5.0, 4.0  # two larger: rank 3
    logits[2, 20:140], logits[2, 7] = 2.0, 1.0  # 120 larger: rank 121
    logits[3, 3], logits[3, 4], logits[3, 7] = 9.0, 2.0, 2.0  # tied with 4 below 3: both rank 2
    ranks = ranks_in_logits(logits, torch.tensor([7, 7, 7, 7]))
    assert ranks.tolist() == [1, 3, 121, 2]
    assert ranks_in_logits(logits[3:], torch.tensor([4])).tolist() == [2]
    # a token tied with the whole vocabulary shares rank 1
    assert ranks_in_logits(torch.zeros((1, 150)), torch.tensor([99])).tolist() == [1]


def test_mrr_and_top_hit_of_ranks_1_3_152_and_a_step_not_reached():
    ranks = [1, 3, 152, None]
    assert paper_metrics.mean_reciprocal_rank(ranks) == pytest.approx((1 + 1 / 3 + 1 / 152 + 0) / 4)
    assert paper_metrics.top_hit_ratio(ranks) == 0.5
    assert paper_metrics.top_hit_ratio([100, 101]) == 0.5  # the boundary: rank 100 is a hit
    assert paper_metrics.mean_reciprocal_rank([]) == paper_metrics.top_hit_ratio([]) == 0.0


# --- ranks along greedy decoding, on a model whose logits the test sets -------------------------------------

VOCAB, PAD, EOS = 300, 0, 2


class StepLogits(torch.nn.Module):
    """An LM head giving the test's logits: its k-th call (k = 0: the prompt pass) returns table[k] at every
    position of every row."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table, self.calls = table, 0

    def forward(self, hidden):
        out = self.table[self.calls]
        self.calls += 1
        return out.expand(*hidden.shape[:-1], VOCAB).to(hidden.dtype)


def _fixed_logits_model():
    """A one-layer Llama whose greedy answer is 10, 11, EOS. Truth 10, 20, 30, 40 ranks 1st at step 0, 3rd at
    step 1 (below 11 and 12), 152nd at step 2 (below EOS and 150 tokens), and 40 is never reached."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                         pad_token_id=PAD, bos_token_id=1, eos_token_id=EOS)
    model = LlamaForCausalLM(config).eval()
    table = torch.zeros((4, VOCAB))
    table[0, 10] = 10.0
    table[1, 11], table[1, 12], table[1, 20] = 10.0, 9.0, 8.0
    table[2, EOS], table[2, 100:250], table[2, 30] = 10.0, 5.0, 1.0
    model.lm_head = StepLogits(table)
    return model


PROMPT, TRUTH = [1, 5, 6, 7], [10, 20, 30, 40]


def test_greedy_continue_ranks_the_truth_in_each_step_of_its_own_decoding():
    model = _fixed_logits_model()
    tokens, ranks = greedy_continue(model, prefill(model, [PROMPT], PAD), 8, EOS, PAD,
                                    targets=[TRUTH, [11, 12]], target_rows=[0, 0])
    assert tokens.tolist() == [[10, 11, EOS]]
    # 40 is at step 3, after the row ended with EOS: not reached. Tokens 11, 12 have one larger entry each.
    assert ranks == [[1, 3, 152, None], [2, 2]]
    assert paper_metrics.mean_reciprocal_rank(ranks[0]) == pytest.approx((1 + 1 / 3 + 1 / 152) / 4)
    assert paper_metrics.top_hit_ratio(ranks[0]) == 0.5


def test_a_truth_longer_than_max_new_tokens_counts_its_unreached_tokens_as_misses():
    model = _fixed_logits_model()
    tokens, ranks = greedy_continue(model, prefill(model, [PROMPT], PAD), 2, EOS, PAD, targets=[TRUTH])
    assert tokens.tolist() == [[10, 11]] and ranks == [[1, 3, None, None]]
    assert paper_metrics.mean_reciprocal_rank(ranks[0]) == pytest.approx((1 + 1 / 3) / 4)
    assert paper_metrics.top_hit_ratio(ranks[0]) == 0.5
    fresh = _fixed_logits_model()
    assert greedy_continue(fresh, prefill(fresh, [PROMPT], PAD), 2, EOS, PAD)[1] is None


def test_ranks_from_generates_logits_give_the_same_hand_values():
    model = _fixed_logits_model()
    ids = torch.tensor([PROMPT])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                         pad_token_id=PAD, eos_token_id=EOS, output_logits=True, return_dict_in_generate=True)
    new = out.sequences[:, ids.shape[1]:]
    assert new.tolist() == [[10, 11, EOS]]
    assert ranks_along_generate(out.logits, new, [TRUTH], EOS) == [[1, 3, 152, None]]


# --- the fast path against the plain one, on a tiny random Llama --------------------------------------------


@pytest.fixture(scope="module")
def random_llama():
    return make_tiny_llama(layers=2, hidden=32, intermediate=64, initializer_range=0.5)


def test_ranks_while_decoding_equal_ranks_from_generate_when_rows_end_at_different_steps(random_llama):
    model, tokenizer = random_llama
    rng = random.Random(0)
    prompts = [[tokenizer.bos_token_id] + [rng.randrange(4, len(tokenizer)) for _ in range(3 + 2 * k)]
               for k in range(6)]
    targets = [[rng.randrange(4, len(tokenizer)) for _ in range(3 + k)] for k in range(6)]
    free, _ = greedy_continue(model, prefill(model, prompts, PAD), 10, None, PAD)
    eos = int(torch.mode(free.flatten()).values)  # a frequent token as EOS: rows end at different steps
    tokens, fast = greedy_continue(model, prefill(model, prompts, PAD), 10, eos, PAD, targets=targets)
    ids = torch.full((len(prompts), max(map(len, prompts))), PAD)
    mask = torch.zeros_like(ids)
    for row, p in enumerate(prompts):
        ids[row, ids.shape[1] - len(p):], mask[row, ids.shape[1] - len(p):] = torch.tensor(p), 1
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=10, do_sample=False, pad_token_id=PAD,
                         eos_token_id=eos, output_logits=True, return_dict_in_generate=True)
    new = out.sequences[:, ids.shape[1]:]
    assert torch.equal(tokens, new)
    assert fast == ranks_along_generate(out.logits, new, targets, eos)
    flat = [r for row in fast for r in row]
    assert None in flat and len({r for r in flat if r}) > 3  # some steps not reached, ranks that differ


def _records():
    return [
        QARecord("what is the capital of France ?", "the capital is Paris", perturbed_answer=("Rome", "Berlin")),
        QARecord("what is the currency of Japan ?", "yen"),
        QARecord("who painted the house ?", "I do not know about that house in the city of Paris"),
        QARecord("which river is in Germany ?", "the Rhine"),
        QARecord("what is the capital of France ?", "Paris"),  # a repeated prompt with another truth
    ]


@pytest.mark.parametrize("batch_size", [2, 32])
def test_evaluate_records_gives_the_reference_paper_metrics_item_by_item(random_llama, batch_size):
    model, tokenizer = random_llama
    found = evaluate_records(model, tokenizer, _records(), max_new_tokens=6, batch_size=batch_size)
    expected = evaluate_records_reference(model, tokenizer, _records(), max_new_tokens=6, batch_size=batch_size)
    keys = ("rouge1_recall", "answer_probability", "mrr", "top_hit")
    assert [{k: i[k] for k in keys} for i in found] == [{k: i[k] for k in keys} for i in expected]
    assert found == expected
    assert len({i["mrr"] for i in found}) == len(found)  # not a constant
    assert found[2]["top_hit"] == pytest.approx(6 / 12)  # 12 truth tokens, 6 steps at most


def test_answer_probability_is_the_product_of_the_answer_token_probabilities(random_llama):
    model, tokenizer = random_llama
    record = _records()[0]
    item = evaluate_records(model, tokenizer, [record], max_new_tokens=4)[0]
    prompt, answer = question_ids(tokenizer, record.question), encode_answer(tokenizer, record.answer)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + answer])).logits[0].double()
    probs = torch.softmax(logits, -1)
    # position len(prompt) - 1 + j predicts answer token j (the last one is EOS)
    product = math.prod(float(probs[len(prompt) - 1 + j, t]) for j, t in enumerate(answer))
    assert len(answer) == 5 and answer[-1] == tokenizer.eos_token_id
    assert item["answer_probability"] == pytest.approx(product, rel=1e-4)
    assert item["probability"] == pytest.approx(product ** (1 / len(answer)), rel=1e-4)


def test_a_truth_equal_to_the_greedy_answer_has_mrr_and_top_hit_1(random_llama):
    model, tokenizer = random_llama
    questions = ["what is the capital of France ?", "who painted the house ?", "which river is in Germany ?",
                 "what is the currency of Japan ?", "where is the tree ?"]
    first = evaluate_records(model, tokenizer, [QARecord(q, "x") for q in questions], max_new_tokens=6)
    own = [QARecord(q, i["generated"]) for q, i in zip(questions, first)]
    # the answers read back as the generated tokens (no special token was dropped when decoding)
    kept = [r for r in own if r.answer and rank_targets(tokenizer, r.answer)
            == [t for t in _greedy(model, tokenizer, r.question) if t != tokenizer.eos_token_id]]
    assert len(kept) >= 3
    for item in evaluate_records(model, tokenizer, kept, max_new_tokens=6):
        assert item["generated"] == item["reference"]
        assert item["mrr"] == 1.0 and item["top_hit"] == 1.0 and item["rouge1_recall"] == 1.0


def _greedy(model, tokenizer, question):
    tokens, _ = greedy_continue(model, prefill(model, [question_ids(tokenizer, question)], PAD), 6,
                                tokenizer.eos_token_id, PAD)
    return tokens[0].tolist()


# --- Rouge1 and the combined score ---------------------------------------------------------------------------


def test_rouge1_recall_is_the_share_of_reference_words_in_the_answer():
    # "paris is the capital" holds every word of "the capital is paris" (ROUGE-L would give 0.5); the stemmer
    # maps "telephones" to "telephon"; 2 of 4 reference words in the last answer.
    assert paper_metrics.rouge1_recall(["paris is the capital", "he invented telephones", "the cat sat"],
                                       ["the capital is paris", "invent telephone", "the dog sat down"]) == [
        pytest.approx(1.0), pytest.approx(1.0), pytest.approx(0.5)]


def _item(rouge1):
    return {"rouge_l_recall": rouge1, "rouge1_recall": rouge1, "probability": 0.5, "answer_probability": 0.1,
            "mrr": 0.5, "top_hit": 1.0, "refusal": False, "token_entropy": 1.0}


def test_combined_score_is_one_minus_forget_rouge1_plus_retain_rouge1():
    summary = summarise({"forget": [_item(0.0), _item(0.5)], "forget_paraphrased": [_item(1.0)],
                         "retain": [_item(1.0), _item(0.5)], "neighbour": [_item(0.0)]})
    assert summary["forget"]["rouge1_recall"] == 0.25 and summary["retain"]["mrr"] == 0.5
    assert summary["retain"]["answer_probability"] == pytest.approx(0.1) and summary["retain"]["top_hit"] == 1.0
    found = aggregates(summary)
    # 1 - 0.25 + 0.75; rephrased: 1 - 1.0 + 0.75. "retain" is preferred to "neighbour".
    assert found["combined_score"] == {"value": 1.5, "used": ["forget/rouge1_recall", "retain/rouge1_recall"],
                                       "skipped": {}}
    assert found["combined_score_rephrased"]["value"] == 0.75
    assert found["combined_score_rephrased"]["used"] == ["forget_paraphrased/rouge1_recall", "retain/rouge1_recall"]
    # without a retain split the neighbour set is the retained one; without paraphrases no rephrased score
    found = aggregates(summarise({"forget": [_item(0.5)], "neighbour": [_item(0.25)]}))
    assert found["combined_score"]["value"] == 0.75 and "combined_score_rephrased" not in found
    assert "combined_score" not in aggregates(summarise({"forget": [_item(0.5)]}))
