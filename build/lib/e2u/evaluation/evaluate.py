"""Batched evaluation: greedy answers (left padding), answer probabilities, and the per-item metrics.

`evaluate_records` runs each prompt batch once for the greedy answer, the truth tokens' ranks along it and
the answer likelihoods (`prompt_once`); `evaluate_records_reference` is its plain definition,
`generate_and_rank` then `answer_nll` (`answer_nll.py`, re-exported here). Every per-item value is returned
so the result file can store it (DESIGN section 4).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Sequence

import torch
from tqdm import tqdm  # plain tqdm: silent when stderr is not a terminal (papermill, CI)

from e2u.data.schema import QARecord
from e2u.evaluation import metrics, paper_metrics
from e2u.evaluation.answer_nll import answer_nll
from e2u.evaluation.entailment import add_entailment, entailment_dataset
from e2u.evaluation.metrics import ModelUnavailable
from e2u.evaluation.prompt_once import generate_and_score, shares_prompt_pass
from e2u.evaluation.similarity import SentenceEmbedder
from e2u.evaluation.token_ranks import ranks_along_generate
from e2u.model.batching import padded
from e2u.model.load import input_device
from e2u.model.prompts import encode_answer, question_ids

log = logging.getLogger(__name__)


def _batches(order: list[int], size: int):
    for start in range(0, len(order), size):
        yield order[start : start + size]


def generate_answers(
    model, tokenizer, prompts: Sequence[Sequence[int]], max_new_tokens: int = 32, batch_size: int = 16,
    progress: bool = False,
) -> list[str]:
    """Greedy answers to token-id prompts, batched by similar length with left padding."""
    return generate_and_rank(model, tokenizer, prompts, max_new_tokens, batch_size, progress)[0]


@torch.no_grad()
def generate_and_rank(
    model, tokenizer, prompts: Sequence[Sequence[int]], max_new_tokens: int = 32, batch_size: int = 16,
    progress: bool = False, targets: Sequence[Sequence[int]] | None = None,
) -> tuple[list[str], list[list[int | None]] | None]:
    """`generate_answers`, and with `targets` the rank of each token of `targets[i]` in the logits `generate`
    returns along prompt i's greedy answer (`token_ranks.ranks_along_generate`, the plain definition).
    `generate` then keeps every step's float32 logits of a batch: steps x batch_size x vocab x 4 bytes."""
    device = input_device(model)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: list[str] = [""] * len(prompts)
    ranks: list[list[int | None]] | None = None if targets is None else [[] for _ in prompts]
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    for chunk in tqdm(list(_batches(order, batch_size)), desc="generate", disable=not progress, leave=False):
        ids, mask = padded([prompts[i] for i in chunk], pad, "left", device)
        width = ids.shape[1]
        out = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
            do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=pad, eos_token_id=eos,
            output_logits=targets is not None, return_dict_in_generate=True,
        )
        new = out.sequences[:, width:]
        for row, i in enumerate(chunk):
            answers[i] = tokenizer.decode(new[row], skip_special_tokens=True).strip()
        if targets is not None:
            for i, r in zip(chunk, ranks_along_generate(out.logits, new, [targets[i] for i in chunk], eos)):
                ranks[i] = r
    return answers, ranks


def evaluate_split(
    model, tokenizer, questions: Sequence[str], references: Sequence[str],
    max_new_tokens: int = 32, batch_size: int = 16,
) -> list[dict]:
    """Per-item results for plain question/reference pairs (no perturbed answers)."""
    records = [QARecord(question=q, answer=r) for q, r in zip(questions, references)]
    return evaluate_records(model, tokenizer, records, max_new_tokens, batch_size)


def ground_truth(record) -> str:
    """The answer scores are computed against: the short golden answer where the record has one
    (real-world sets, whose `answer` is the model's own generation), else `answer`."""
    return record.golden_answer or record.answer


def scored_answers(record, truth: str) -> list[str]:
    """The answers whose likelihood the metrics need: the truth; with perturbed answers also the paraphrased
    answer (the truth where there is none) and the perturbed ones."""
    if not record.perturbed_answer:
        return [truth]
    return [truth, record.paraphrased_answer or truth, *record.perturbed_answer]


def evaluate_records(
    model, tokenizer, records: Sequence, max_new_tokens: int = 32, batch_size: int = 16, embedder=None,
) -> list[dict]:
    """Per-item metrics for one split (reference/metrics.md): greedy answer, ROUGE-L and Rouge1 recall,
    P(answer) length-normalised and whole, MRR and Top-Hit ratio (`paper_metrics`), refusal, token entropy;
    with perturbed answers also the truth ratio R and the options-normalised probability; with an embedder
    the cosine similarity to the reference sentence.

    Each prompt batch runs once for both the greedy answers and the answer NLLs (`prompt_once`); the values
    are `evaluate_records_reference`'s (cosine up to float rounding). bench/evaluation_bench.py measures both."""
    prompts = [question_ids(tokenizer, r.question) for r in records]
    truths = [ground_truth(r) for r in records]
    if not shares_prompt_pass(model, prompts):
        return evaluate_records_reference(model, tokenizer, records, max_new_tokens, batch_size, embedder)
    answers = [[encode_answer(tokenizer, a) for a in scored_answers(r, t)] for r, t in zip(records, truths)]
    generated, nll, ranks = generate_and_score(model, tokenizer, prompts, answers, max_new_tokens, batch_size,
                                               targets=[rank_targets(tokenizer, t) for t in truths])
    return _items(tokenizer, records, truths, generated, nll, ranks, embedder)


def evaluate_records_reference(
    model, tokenizer, records: Sequence, max_new_tokens: int = 32, batch_size: int = 16, embedder=None,
) -> list[dict]:
    """The plain definition of `evaluate_records`: `generate_and_rank` (ranks from `generate`'s logits), then
    one `answer_nll` call over every (prompt, answer) pair, then the metrics (cosine through
    `SentenceEmbedder.cosine_plain`)."""
    prompts = [question_ids(tokenizer, r.question) for r in records]
    truths = [ground_truth(r) for r in records]
    generated, ranks = generate_and_rank(model, tokenizer, prompts, max_new_tokens, batch_size,
                                         targets=[rank_targets(tokenizer, t) for t in truths])
    pairs, owners = [], []
    for i, r in enumerate(records):
        for a in scored_answers(r, truths[i]):
            pairs.append((prompts[i], encode_answer(tokenizer, a)))
            owners.append(i)
    nll = answer_nll(model, tokenizer, [p for p, _ in pairs], [a for _, a in pairs], batch_size)
    per_record: list[list[float]] = [[] for _ in records]
    for i, value in zip(owners, nll):
        per_record[i].append(value)
    return _items(tokenizer, records, truths, generated, per_record, ranks, embedder, plain=True)


def rank_targets(tokenizer, truth: str) -> list[int]:
    """The truth tokens ranked for MRR and Top-Hit: tokenised without special tokens (PISTOL's `compute_MRR`),
    as the answer follows the prompt (`encode_answer` without EOS; a leading space in the plain template)."""
    return encode_answer(tokenizer, truth, with_eos=False)


def _items(tokenizer, records, truths, generated, nll, ranks, embedder, plain: bool = False) -> list[dict]:
    """The per-item dictionaries from the greedy answers, `nll[i]` (the NLLs of `scored_answers` of record i)
    and `ranks[i]` (those of `rank_targets` of record i's truth along its greedy answer)."""
    rouge = metrics.rouge_l_recall(generated, truths)
    rouge1 = paper_metrics.rouge1_recall(generated, truths)
    truth_lengths = [len(encode_answer(tokenizer, t)) for t in truths]  # the tokens nll[i][0] averages over
    cosine = None
    if embedder is not None:
        cosine = (embedder.cosine_plain if plain else embedder.cosine)(
            generated, [r.original_answer or r.answer for r in records])
    items = []
    for i, (r, g) in enumerate(zip(records, generated)):
        item = {
            "question": r.question, "reference": truths[i], "generated": g, "rouge_l_recall": rouge[i],
            "rouge1_recall": rouge1[i], "probability": metrics.normalised_probability(nll[i][0]),
            "answer_probability": paper_metrics.answer_probability(nll[i][0], truth_lengths[i]),
            "mrr": paper_metrics.mean_reciprocal_rank(ranks[i]), "top_hit": paper_metrics.top_hit_ratio(ranks[i]),
            "refusal": metrics.is_refusal(g),
            "token_entropy": metrics.token_entropy(tokenizer(g, add_special_tokens=False)["input_ids"]),
        }
        if r.perturbed_answer:
            true_nll, paraphrased_nll, perturbed = nll[i][0], nll[i][1], nll[i][2:]
            item["truth_ratio"] = metrics.truth_ratio(paraphrased_nll, perturbed)
            item["probability_options"] = metrics.probability_with_options(true_nll, perturbed)
        if cosine is not None:
            item["cosine_similarity"] = cosine[i]
        items.append(item)
    return items


def load_embedder():
    """The MiniLM sentence embedder, or None when its package is not installed (cosine: not computed)."""
    try:
        return SentenceEmbedder()
    except ModelUnavailable as exc:
        log.warning("%s", exc)
        return None


def evaluate_dataset(model, tokenizer, splits: dict, max_new_tokens: int = 32, batch_size: int = 16,
                     embedder="auto", entailment=None, paraphrased: Sequence[str] | None = None) -> dict:
    """Evaluate every split, and the paraphrased questions of every split that has them (of those named in
    `paraphrased` only, when given: the paper's rephrase attack asks the forget questions alone).

    `splits` maps a split name to a list of `QARecord`; the result maps split names (with
    `<split>_paraphrased` added) to per-item dictionaries. Training-only splits (`*_train`) are skipped.
    All splits go through one `evaluate_records` call, so generation batches fill up across splits
    (bench/evaluation_bench.py times it against `evaluate_records_reference`). With `entailment` (an
    `EntailmentScorer`, see `load_entailment`) every item is also labelled by it (`entailment.add_entailment`);
    without it entailment is not computed.
    """
    embedder = load_embedder() if embedder == "auto" else embedder
    parts = evaluation_parts(splits, paraphrased)
    items = evaluate_records(model, tokenizer, [r for _, records in parts for r in records], max_new_tokens,
                             batch_size, embedder)
    results: dict[str, list[dict]] = {}
    start = 0
    for name, records in parts:
        results[name] = items[start : start + len(records)]
        start += len(records)
    if entailment is not None:
        add_entailment(results, entailment, entailment_dataset(splits))
    return results


def evaluation_parts(splits: dict, paraphrased: Sequence[str] | None = None) -> list[tuple[str, list]]:
    """(name, records) of every evaluated split in order: each split but `*_train`, each followed by
    `<split>_paraphrased` (its records asking the paraphrased question) where it has paraphrases and is
    named in `paraphrased` (None: every split)."""
    parts: list[tuple[str, list]] = []
    for name, records in splits.items():
        if name.endswith("_train"):
            continue
        parts.append((name, list(records)))
        if paraphrased is not None and name not in paraphrased:
            continue
        asked = [replace(r, question=r.paraphrased_question) for r in records if r.paraphrased_question]
        if asked:
            parts.append((f"{name}_paraphrased", asked))
    return parts


def is_forget_split(split: str) -> bool:
    return split == "forget" or split.startswith("forget_")


def summarise(results: dict) -> dict:
    """Split-level values from the per-item ones. Truth ratio in the split's orientation: closer-look's
    forget score (1 - mean min(R, 1/R); 0 = forgotten) on forget splits, mean max(0, 1 - 1/R) elsewhere;
    TOFU's forget score mean min(R, 1/R) is kept too. A metric whose inputs are absent is None."""
    summary = {}
    for split, items in results.items():
        def mean_of(key):
            values = [float(i[key]) for i in items if key in i]
            return metrics.mean(values) if values else None

        ratios = [i["truth_ratio"] for i in items if "truth_ratio" in i]
        entry = {
            "n": len(items),
            "rouge_l_recall": mean_of("rouge_l_recall"),
            "rouge1_recall": mean_of("rouge1_recall"),
            "probability": mean_of("probability"),
            "answer_probability": mean_of("answer_probability"),
            "mrr": mean_of("mrr"),
            "top_hit": mean_of("top_hit"),
            "probability_options": mean_of("probability_options"),
            "refusal_rate": metrics.mean(float(i["refusal"]) for i in items),
            "token_entropy": mean_of("token_entropy"),
            "cosine_similarity": mean_of("cosine_similarity"),
            "entailment": mean_of("entailment"),  # None unless an NLI model labelled the items
            "truth_ratio": None,
        }
        if ratios:
            if is_forget_split(split):
                entry["truth_ratio"] = metrics.closer_look_forget_truth_ratio(ratios)
                entry["truth_ratio_tofu"] = metrics.tofu_forget_truth_ratio(ratios)
            else:
                entry["truth_ratio"] = metrics.retain_truth_ratio(ratios)
        summary[split] = entry
    return summary
