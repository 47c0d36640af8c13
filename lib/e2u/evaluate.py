"""Batched evaluation: greedy answers (left padding), answer probabilities, and the per-item metrics.

Every per-item value is returned so the result file can store it (DESIGN section 4).
"""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm import tqdm  # plain tqdm: silent when stderr is not a terminal (papermill, CI)

from . import metrics
from .prompts import encode_answer, question_ids


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
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            ids[row, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]) :] = 1
        out = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
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
    """Mean token negative log-likelihood of each answer given its prompt (right padding)."""
    device = next(model.parameters()).device
    out: list[float] = [float("nan")] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(answers[i]))
    for chunk in _batches(order, batch_size):
        width = max(len(prompts[i]) + len(answers[i]) for i in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            p, a = list(prompts[i]), list(answers[i])
            ids[row, : len(p) + len(a)] = torch.tensor(p + a)
            labels[row, len(p) : len(p) + len(a)] = torch.tensor(a)
            mask[row, : len(p) + len(a)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        labels = labels.to(device)
        token_nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="none"
        )
        counts = (labels[:, 1:] != -100).sum(1).clamp(min=1)
        for row, i in enumerate(chunk):
            out[i] = (token_nll[row].sum() / counts[row]).item()
    return out


def evaluate_split(
    model, tokenizer, questions: Sequence[str], references: Sequence[str],
    max_new_tokens: int = 32, batch_size: int = 16,
) -> list[dict]:
    """Per-item results for one split: generated answer, ROUGE-L recall, probability, refusal."""
    prompts = [question_ids(tokenizer, q) for q in questions]
    generated = generate_answers(model, tokenizer, prompts, max_new_tokens, batch_size)
    nll = answer_nll(model, tokenizer, prompts, [encode_answer(tokenizer, r) for r in references], batch_size)
    rouge = metrics.rouge_l_recall(generated, references)
    return [
        {
            "question": q, "reference": r, "generated": g, "rouge_l_recall": rl,
            "probability": metrics.normalised_probability(n), "refusal": metrics.is_refusal(g),
        }
        for q, r, g, rl, n in zip(questions, references, generated, rouge, nll)
    ]


def evaluate_dataset(model, tokenizer, splits: dict, max_new_tokens: int = 32, batch_size: int = 16) -> dict:
    """Evaluate every split, and the paraphrased questions of every split that has them.

    `splits` maps a split name to a list of `QARecord`; the result maps split names (with
    `<split>_paraphrased` added) to per-item dictionaries.
    """
    results: dict[str, list[dict]] = {}
    for name, records in splits.items():
        answers = [r.answer for r in records]
        results[name] = evaluate_split(model, tokenizer, [r.question for r in records], answers, max_new_tokens, batch_size)
        paraphrased = [r for r in records if r.paraphrased_question]
        if paraphrased:
            results[f"{name}_paraphrased"] = evaluate_split(
                model, tokenizer, [r.paraphrased_question for r in paraphrased], [r.answer for r in paraphrased],
                max_new_tokens, batch_size,
            )
    return results


def summarise(results: dict) -> dict:
    """Split-level means of the per-item values."""
    return {
        split: {
            "n": len(items),
            "rouge_l_recall": metrics.mean(i["rouge_l_recall"] for i in items),
            "probability": metrics.mean(i["probability"] for i in items),
            "refusal_rate": metrics.mean(float(i["refusal"]) for i in items),
        }
        for split, items in results.items()
    }
