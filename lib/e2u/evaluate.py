"""Batched evaluation: greedy answers (left padding), answer probabilities, and the per-item metrics.

Every per-item value is returned so the result file can store it (DESIGN section 4).
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
from tqdm import tqdm  # plain tqdm: silent when stderr is not a terminal (papermill, CI)

from . import metrics
from .batching import IGNORE, padded, prompt_answer_batch
from .prompts import encode_answer, question_ids

log = logging.getLogger(__name__)


def _batches(order: list[int], size: int):
    for start in range(0, len(order), size):
        yield order[start : start + size]


@torch.no_grad()
def generate_answers(
    model, tokenizer, prompts: Sequence[Sequence[int]], max_new_tokens: int = 32, batch_size: int = 16,
    progress: bool = False,
) -> list[str]:
    """Greedy answers to token-id prompts, batched by similar length with left padding."""
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: list[str] = [""] * len(prompts)
    pad = tokenizer.pad_token_id
    for chunk in tqdm(list(_batches(order, batch_size)), desc="generate", disable=not progress, leave=False):
        ids, mask = padded([prompts[i] for i in chunk], pad, "left", device)
        width = ids.shape[1]
        out = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
            do_sample=False, temperature=None, top_p=None, top_k=None,
            pad_token_id=pad, eos_token_id=tokenizer.eos_token_id,
        )
        for row, i in enumerate(chunk):
            answers[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
    return answers


@torch.no_grad()
def answer_nll(
    model, tokenizer, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]], batch_size: int = 16
) -> list[float]:
    """Mean token negative log-likelihood of each answer given its prompt.

    Each distinct prompt runs once (left padded, batches of `batch_size` distinct prompts); its KV cache
    is copied to one row per answer, and the answers run after it (right padded, `batch_size` rows a
    call). Logits are computed only at the positions that predict answer tokens.
    """
    head = _plain_lm_head(model)
    if head is None or any(len(p) == 0 for p in prompts):
        return _answer_nll_unshared(model, tokenizer, prompts, answers, batch_size)
    out: list[float] = [float("nan")] * len(prompts)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(tuple(prompt), []).append(i)
    distinct = sorted(groups, key=len)
    for start in range(0, len(distinct), batch_size):
        batch = distinct[start : start + batch_size]
        _shared_prompt_batch(model, head, tokenizer.pad_token_id, batch, [groups[p] for p in batch], answers,
                             batch_size, out)
    return out


def _plain_lm_head(model):
    """The LM head when logits are exactly head(body(x)) (no soft-capping or scaling), else None."""
    config = model.config
    if model.base_model is model or getattr(config, "final_logit_softcapping", None) or hasattr(config, "logit_scale"):
        return None
    return model.get_output_embeddings()


def _shared_prompt_batch(model, head, pad: int, batch: list[tuple[int, ...]], members: list[list[int]],
                         answers: Sequence[Sequence[int]], batch_size: int, out: list[float]) -> None:
    """NLLs of every answer of the distinct prompts in `batch` (members[k]: the items of batch[k]), into `out`."""
    from transformers import DynamicCache

    body, device = model.base_model, next(model.parameters()).device
    ids, mask = padded(batch, pad, "left", device)
    prompt_pass = body(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                       use_cache=True)
    kv = [(layer.keys, layer.values) for layer in prompt_pass.past_key_values.layers]
    # The last prompt position predicts each answer's first token.
    first_logp = torch.log_softmax(head(prompt_pass.last_hidden_state[:, -1]).float(), dim=-1)
    lengths = mask.sum(1)
    rows = sorted(((row, i) for row, items in enumerate(members) for i in items), key=lambda r: len(answers[r[1]]))
    sums: dict[int, torch.Tensor] = {}
    for row, i in rows:
        if len(answers[i]):
            sums[i] = -first_logp[row, answers[i][0]]
    # The answer pass feeds tokens a[:-1]; position j predicts a[j + 1]. One-token answers need no pass.
    longer = [(row, i) for row, i in rows if len(answers[i]) > 1]
    for start in range(0, len(longer), batch_size):
        chunk = longer[start : start + batch_size]
        # Feed a[:-1] right padded; the target of column j is a[j + 1] (IGNORE in the padding).
        answer_ids, answer_mask = padded([list(answers[i])[:-1] for _, i in chunk], pad, "right", device)
        answer_width = answer_ids.shape[1]
        targets = padded([list(answers[i])[1:] for _, i in chunk], IGNORE, "right", device)[0]
        select = torch.tensor([row for row, _ in chunk], device=device)
        cache = DynamicCache(ddp_cache_data=[(k[select], v[select]) for k, v in kv], config=model.config)
        valid = answer_mask.bool()
        hidden = body(
            input_ids=answer_ids, attention_mask=torch.cat([mask[select], answer_mask], dim=1),
            position_ids=lengths[select, None] + torch.arange(answer_width, device=device),
            past_key_values=cache, use_cache=True,
        ).last_hidden_state
        token_nll = torch.nn.functional.cross_entropy(head(hidden[valid]).float(), targets[valid], reduction="none")
        per_row = torch.zeros(len(chunk), device=device).index_add_(0, valid.nonzero()[:, 0], token_nll)
        for n, (_, i) in enumerate(chunk):
            sums[i] = sums[i] + per_row[n]
    for _, i in rows:
        out[i] = (sums[i] / len(answers[i])).item() if len(answers[i]) else 0.0


@torch.no_grad()
def _answer_nll_unshared(
    model, tokenizer, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]], batch_size: int = 16
) -> list[float]:
    """Reference `answer_nll`: one full forward pass per (prompt, answer) pair, right padding."""
    device = next(model.parameters()).device
    out: list[float] = [float("nan")] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(answers[i]))
    for chunk in _batches(order, batch_size):
        batch = prompt_answer_batch([prompts[i] for i in chunk], [answers[i] for i in chunk],
                                    tokenizer.pad_token_id, device)
        labels = batch["labels"]
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        token_nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=IGNORE, reduction="none"
        )
        counts = (labels[:, 1:] != IGNORE).sum(1).clamp(min=1)
        for row, i in enumerate(chunk):
            out[i] = (token_nll[row].sum() / counts[row]).item()
    return out


def evaluate_split(
    model, tokenizer, questions: Sequence[str], references: Sequence[str],
    max_new_tokens: int = 32, batch_size: int = 16,
) -> list[dict]:
    """Per-item results for plain question/reference pairs (no perturbed answers)."""
    from .data.schema import QARecord

    records = [QARecord(question=q, answer=r) for q, r in zip(questions, references)]
    return evaluate_records(model, tokenizer, records, max_new_tokens, batch_size)


def ground_truth(record) -> str:
    """The answer scores are computed against: the short golden answer where the record has one
    (real-world sets, whose `answer` is the model's own generation), else `answer`."""
    return record.golden_answer or record.answer


def evaluate_records(
    model, tokenizer, records: Sequence, max_new_tokens: int = 32, batch_size: int = 16, embedder=None,
) -> list[dict]:
    """Per-item metrics for one split (reference/metrics.md): greedy answer, ROUGE-L recall, P(answer),
    refusal, token entropy; with perturbed answers also the truth ratio R and the options-normalised
    probability; with an embedder the cosine similarity to the reference sentence."""
    prompts = [question_ids(tokenizer, r.question) for r in records]
    truths = [ground_truth(r) for r in records]
    generated = generate_answers(model, tokenizer, prompts, max_new_tokens, batch_size)
    # One NLL pass over every (prompt, answer) pair the metrics need: truth, paraphrase, perturbations.
    pairs, owners = [], []
    for i, r in enumerate(records):
        answers = [truths[i]]
        if r.perturbed_answer:
            answers += [r.paraphrased_answer or truths[i], *r.perturbed_answer]
        for a in answers:
            pairs.append((prompts[i], encode_answer(tokenizer, a)))
            owners.append(i)
    nll = answer_nll(model, tokenizer, [p for p, _ in pairs], [a for _, a in pairs], batch_size)
    per_record: list[list[float]] = [[] for _ in records]
    for i, value in zip(owners, nll):
        per_record[i].append(value)
    rouge = metrics.rouge_l_recall(generated, truths)
    cosine = embedder.cosine(generated, [r.original_answer or r.answer for r in records]) if embedder else None
    items = []
    for i, (r, g) in enumerate(zip(records, generated)):
        item = {
            "question": r.question, "reference": truths[i], "generated": g, "rouge_l_recall": rouge[i],
            "probability": metrics.normalised_probability(per_record[i][0]), "refusal": metrics.is_refusal(g),
            "token_entropy": metrics.token_entropy(tokenizer(g, add_special_tokens=False)["input_ids"]),
        }
        if r.perturbed_answer:
            true_nll, paraphrased_nll, perturbed = per_record[i][0], per_record[i][1], per_record[i][2:]
            item["truth_ratio"] = metrics.truth_ratio(paraphrased_nll, perturbed)
            item["probability_options"] = metrics.probability_with_options(true_nll, perturbed)
        if cosine is not None:
            item["cosine_similarity"] = cosine[i]
        items.append(item)
    return items


def load_embedder():
    """The MiniLM sentence embedder, or None when its package is not installed (cosine: not computed)."""
    from .metrics import ModelUnavailable
    from .similarity import SentenceEmbedder

    try:
        return SentenceEmbedder()
    except ModelUnavailable as exc:
        log.warning("%s", exc)
        return None


def evaluate_dataset(model, tokenizer, splits: dict, max_new_tokens: int = 32, batch_size: int = 16,
                     embedder="auto", entailment=None) -> dict:
    """Evaluate every split, and the paraphrased questions of every split that has them.

    `splits` maps a split name to a list of `QARecord`; the result maps split names (with
    `<split>_paraphrased` added) to per-item dictionaries. Training-only splits (`*_train`) are skipped.
    All splits go through one `evaluate_records` call, so generation batches fill up across splits
    (bench/eval_bench.py measures the gain). With `entailment` (an `EntailmentScorer`, see
    `load_entailment`) every item is also labelled by it (`entailment.add_entailment`); without it entailment is
    not computed.
    """
    from dataclasses import replace

    embedder = load_embedder() if embedder == "auto" else embedder
    parts: list[tuple[str, list]] = []
    for name, records in splits.items():
        if name.endswith("_train"):
            continue
        parts.append((name, list(records)))
        paraphrased = [replace(r, question=r.paraphrased_question) for r in records if r.paraphrased_question]
        if paraphrased:
            parts.append((f"{name}_paraphrased", paraphrased))
    items = evaluate_records(model, tokenizer, [r for _, records in parts for r in records], max_new_tokens,
                             batch_size, embedder)
    results: dict[str, list[dict]] = {}
    start = 0
    for name, records in parts:
        results[name] = items[start : start + len(records)]
        start += len(records)
    if entailment is not None:
        from .entailment import add_entailment, entailment_dataset

        add_entailment(results, entailment, entailment_dataset(splits))
    return results


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
            "probability": mean_of("probability"),
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
