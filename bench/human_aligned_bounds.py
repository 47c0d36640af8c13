"""The bounds of the human-aligned refusal checks (`e2u.evaluation.human_aligned`), measured on the embedded model.

For the embedded factual questions, each of five kinds of answer is scored as the checks score it —
perplexity under the unedited model given the question, and the question-answer embedding fit (MiniLM):

* `own`: the model's own greedy answer (fluent and on topic by construction);
* `crafted`: the refusal the model writes for the question by self-improvement (`recipes.self_improvement`);
* `template`: the fixed refusal, the same for every question;
* `other`: the crafted refusal of another question (fluent, but about something else);
* `scrambled`: the template's words in a seeded random order (not fluent).

It prints the median and the range of each, and the share each bound lets through: a fluency bound should
pass `own`, `crafted` and `template` and stop `scrambled`; a fit bound should pass `crafted` more often
than `template` and `other`. The baseline of the timing is one perplexity pass over the `own` answers.

    OMP_NUM_THREADS=1 python bench/human_aligned_bounds.py [--questions 20]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from tqdm import tqdm

from e2u.data.factual import read_embedded
from e2u.data.refusals import refusal_for
from e2u.evaluation.evaluate import generate_answers
from e2u.evaluation.human_aligned import AlignmentBounds, perplexities
from e2u.evaluation.similarity import SentenceEmbedder
from e2u.model.load import load_model
from e2u.model.prompts import question_ids
from e2u.recipes.self_improvement import ModelWriter, craft_targets, load_demonstrations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=20)
    args = parser.parse_args()
    model, tokenizer = load_model("smollm2-135m-instruct")
    records = [q.record for q in read_embedded()[: args.questions]]
    asked = [r.question for r in records]
    started = time.perf_counter()
    own = generate_answers(model, tokenizer, [question_ids(tokenizer, q) for q in asked])
    crafted = [c.target for c in craft_targets(ModelWriter(model, tokenizer), records, load_demonstrations())]
    template = [refusal_for(q) for q in asked]
    shuffle = random.Random(0)
    scrambled = [" ".join(shuffle.sample(t.split(), len(t.split()))) for t in template]
    kinds = {"own": own, "crafted": crafted, "template": template, "other": crafted[1:] + crafted[:1],
             "scrambled": scrambled}
    embedder = SentenceEmbedder()
    bounds = AlignmentBounds()
    clock = time.perf_counter()
    perplexities(model, tokenizer, asked, own)
    baseline = time.perf_counter() - clock
    print(f"{len(asked)} questions; answers written in {clock - started:.1f} s")
    print(f"{'kind':10s} {'perplexity median [min, max]':34s} {'fit median [min, max]':26s} "
          f"ppl<={bounds.max_perplexity:g}  fit>={bounds.min_fit:g}")
    for kind, answers in tqdm(kinds.items(), desc="kinds"):
        clock = time.perf_counter()
        ppl = perplexities(model, tokenizer, asked, answers)
        fit = embedder.cosine(asked, answers)
        seconds = time.perf_counter() - clock
        fluent = sum(p <= bounds.max_perplexity for p in ppl) / len(ppl)
        fits = sum(f >= bounds.min_fit for f in fit) / len(fit)
        print(f"{kind:10s} {statistics.median(ppl):8.1f} [{min(ppl):7.1f}, {max(ppl):9.1f}]{'':8s} "
              f"{statistics.median(fit):5.2f} [{min(fit):4.2f}, {max(fit):4.2f}]{'':8s} {fluent:6.0%} {fits:9.0%}"
              f"   ({seconds / baseline:.1f}x one perplexity pass)")
    for question, answer in list(zip(asked, crafted))[:3]:
        print(f"  crafted: {question} -> {answer}")


if __name__ == "__main__":
    main()
