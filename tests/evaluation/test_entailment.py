"""Entailment (reference/metrics.md 1(c)): computed when the cell names a local NLI model, else not computed.

A tiny random BERT sequence-classifier with closer-look's three labels stands in for the NLI model: the
test does not check that it understands English, only that a run labels every item exactly as the scorer
does when called directly on closer-look's (premise, hypothesis) pairs, with the ROUGE-L floor applied.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import torch
from conftest import make_tiny_llama, make_tokenizer

from e2u.data.schema import QARecord
from e2u.errors import E2UError
from e2u.evaluation.entailment import ROUGE_FLOOR, closer_look_premise, entailment_dataset, load_entailment
from e2u.evaluation.evaluate import evaluate_dataset, summarise

LABELS = {0: "entailment", 1: "neutral", 2: "contradiction"}
QUESTIONS = [
    "What is the capital of France?", "Who painted the house?", "What is the currency of Japan?",
    "Which language is spoken in Austria?", "Who wrote the book?", "Where is the river?",
    "What is the capital city of Italy?", "Who invented the film?", "Which country is Lisbon in?",
    "What colour is the tree?", "Who founded the city of Rome?", "What is the music of Spain?",
]


def save_tiny_nli(directory, seed: int = 0, id2label=None):
    """A random 1-layer BERT classifier and the word-level test tokenizer, saved as an NLI model directory."""
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = make_tokenizer()
    id2label = id2label or LABELS
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id, initializer_range=0.5,
        id2label=id2label, label2id={v: k for k, v in id2label.items()},
    )
    BertForSequenceClassification(config).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def llama():
    return make_tiny_llama()


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    return load_entailment(str(save_tiny_nli(tmp_path_factory.mktemp("nli"))), device="cpu")


def overlapping_splits(model, tokenizer, names):
    """Splits whose references overlap the model's own answers (ROUGE-L above the floor) for two items in
    three, and share no word with them for the third, so both the classifier and the floor decide labels."""
    splits = {name: [QARecord(question=q, answer="x") for q in QUESTIONS[k::len(names)]]
              for k, name in enumerate(names)}
    first = evaluate_dataset(model, tokenizer, splits, max_new_tokens=5, batch_size=4, embedder=None)
    out = {}
    for name, records in splits.items():
        out[name] = [replace(r, answer=f"{item['generated']} the dog" if k % 3 else "zebra quokka")
                     for k, (r, item) in enumerate(zip(records, first[name]))]
    return out, first


def direct_labels(scorer, items, premise):
    """What the scorer says when called directly: NLI labels of closer-look's pairs, "none" below the floor."""
    gens, refs = [i["generated"] for i in items], [i["reference"] for i in items]
    texts, pairs = (gens, refs) if premise == "generation" else (refs, gens)
    raw = scorer.labels(texts, pairs)
    return ["none" if i["rouge_l_recall"] < ROUGE_FLOOR else label for label, i in zip(raw, items)]


@pytest.mark.parametrize("names, dataset, premises", [
    (("forget", "retain"), "tofu", {"forget": "generation", "retain": "reference"}),
    (("forget", "neighbour"), "real_world", {"forget": "generation", "neighbour": "generation"}),
])
def test_run_with_nli_model_labels_items_as_the_scorer_does(llama, scorer, names, dataset, premises):
    model, tokenizer = llama
    splits, first = overlapping_splits(model, tokenizer, names)
    assert entailment_dataset(splits) == dataset
    results = evaluate_dataset(model, tokenizer, splits, max_new_tokens=5, batch_size=4, embedder=None,
                               entailment=scorer)
    summary = summarise(results)
    seen, swapped_differs = set(), False
    for name in names:
        items = results[name]
        assert [i["generated"] for i in items] == [i["generated"] for i in first[name]]  # same answers
        expected = direct_labels(scorer, items, premises[name])
        assert [i["entailment_label"] for i in items] == expected
        assert [i["entailment"] for i in items] == [1.0 if label == "entailment" else 0.0 for label in expected]
        assert summary[name]["entailment"] == pytest.approx(expected.count("entailment") / len(expected))
        # the floor: an item shares no word with its reference exactly when it is forced to "none"
        assert [i["rouge_l_recall"] < ROUGE_FLOOR for i in items] == [k % 3 == 0 for k in range(len(items))]
        seen.update(expected)
        other = "reference" if premises[name] == "generation" else "generation"
        swapped_differs |= direct_labels(scorer, items, other) != expected
    # the check has teeth: the classifier gives several labels, and swapping premise and hypothesis matters
    assert {"none", "entailment"} <= seen and len(seen) >= 3
    assert swapped_differs


def test_without_a_scorer_entailment_is_not_computed(llama):
    model, tokenizer = llama
    splits = {"forget": [QARecord(question=q, answer="Paris") for q in QUESTIONS[:3]]}
    results = evaluate_dataset(model, tokenizer, splits, max_new_tokens=3, batch_size=4, embedder=None)
    assert all("entailment" not in i and "entailment_label" not in i for i in results["forget"])
    assert summarise(results)["forget"]["entailment"] is None


def test_closer_look_premise_per_split():
    assert closer_look_premise("tofu", "forget") == "generation"
    assert closer_look_premise("tofu", "forget_paraphrased") == "generation"
    for split in ("retain", "retain_paraphrased", "real_authors", "world_facts"):
        assert closer_look_premise("tofu", split) == "reference"
    for split in ("forget", "neighbour", "neighbour_paraphrased"):
        assert closer_look_premise("real_world", split) == "generation"
    assert entailment_dataset({"forget": [QARecord("q", "a")], "retain": [QARecord("q", "a")]}) == "tofu"
    assert entailment_dataset({"forget": [QARecord("q", "a", golden_answer="g")]}) == "real_world"


def test_empty_nli_model_is_none_with_a_logged_reason(caplog):
    with caplog.at_level(logging.INFO, logger="e2u.evaluation.entailment"):
        assert load_entailment("") is None
    assert "nli_model" in caplog.text and "not computed" in caplog.text


def test_unloadable_nli_model_is_an_error_naming_the_parameter(tmp_path):
    with pytest.raises(E2UError, match=r"parameter nli_model: expected a local directory with an NLI "
                                       r"sequence-classification model.*does-not-exist"):
        load_entailment(str(tmp_path / "does-not-exist"))
    no_entailment = save_tiny_nli(tmp_path / "sentiment", id2label={0: "negative", 1: "positive"})
    with pytest.raises(E2UError, match=r"parameter nli_model: .*no 'entailment' label"):
        load_entailment(str(no_entailment))

