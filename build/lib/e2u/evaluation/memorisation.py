"""How well a model recalls its training answers: TOFU's check that finetuning worked (Maini et al. 2024)."""

from __future__ import annotations

import random
from typing import Mapping, Sequence

from e2u.evaluation import metrics
from e2u.evaluation.evaluate import evaluate_split


def memorisation_report(model, tokenizer, splits: Mapping[str, Sequence], size: int = 20, seed: int = 0,
                        max_new_tokens: int = 32, batch_size: int = 64) -> dict:
    """Greedy answers to (a seeded sample of at most `size`) questions of each split, scored by ROUGE-L recall.

    The target model should reproduce its training answers (mean recall near 1); the retain model
    should do so on `retain` and not on `forget`. All splits share the generation batches: decoding
    on a CPU costs about the same for 40 rows as for 16.
    """
    chosen = {name: sorted(random.Random(f"{seed}:{name}").sample(range(len(records)), min(size, len(records))))
              for name, records in splits.items()}
    questions = [splits[name][i].question for name in chosen for i in chosen[name]]
    answers = [splits[name][i].answer for name in chosen for i in chosen[name]]
    items = evaluate_split(model, tokenizer, questions, answers, max_new_tokens, batch_size)
    report, start = {}, 0
    for name, indices in chosen.items():
        mine, start = items[start : start + len(indices)], start + len(indices)
        report[name] = {
            "n": len(mine),
            "rouge_l_recall": round(metrics.mean(i["rouge_l_recall"] for i in mine), 4),
            "probability": round(metrics.mean(i["probability"] for i in mine), 4),
            "items": [{k: i[k] for k in ("question", "reference", "generated", "rouge_l_recall")} for i in mine],
        }
    return report
