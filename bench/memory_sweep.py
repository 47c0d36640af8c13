"""GRACE or WISE on a fixed sample of the embedded factual questions, with one setting changed: what the numbers in
lib/e2u/hparams/grace.yaml and wise.yaml come from.

The sample: every (len // 40)-th embedded factual question, the first 10 edited into the fixed refusal, the next 20
kept (the locality rows hold the unedited model's own answers, as `apply` builds them), the last 10 never seen.
Prints, per group (forget, its paraphrases, kept, other): how many greedy answers (24 tokens) start with the
refusal, how many are unchanged word for word, and the routing statistics (`editing.routing`).

`--record NAME:LABEL` also stores the counts under LABEL in bench/results/NAME.json (the other labels kept),
which the memory editors chapter quotes (`e2u.book.measured`).

    OMP_NUM_THREADS=1 python bench/memory_sweep.py grace --set eps_ratio=0.2
    OMP_NUM_THREADS=1 python bench/memory_sweep.py wise --set n_iter=40 --set locality_per_edit=4
    OMP_NUM_THREADS=1 python bench/memory_sweep.py grace --set eps_ratio=0.2 --record memory_sweep_grace:eps020
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from e2u.data.refusals import refusal_for
from e2u.editing.memory import grace, wise
from e2u.editing.memory.routing import FailedEdit, routing_of_pairs
from e2u.editing.requests import EditRequest
from e2u.methods import method_hparams
from e2u.model.batching import padded
from e2u.model.load import load_model
from e2u.model.prompts import question_ids

QUESTIONS = Path(__file__).resolve().parents[1] / "lib" / "e2u" / "data" / "factual_questions.jsonl"


def greedy(model, tokenizer, questions, n: int = 24) -> list[str]:
    ids, mask = padded([question_ids(tokenizer, q) for q in questions], tokenizer.pad_token_id, "left")
    out = model.generate(ids, attention_mask=mask, max_new_tokens=n, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    return [tokenizer.decode(o[ids.shape[1]:], skip_special_tokens=True) for o in out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", choices=["grace", "wise"])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a hyper-parameter (YAML value)")
    parser.add_argument("--record", default="", metavar="NAME:LABEL", help="store the counts in bench/results/NAME.json")
    args = parser.parse_args()
    name, _, label = args.record.partition(":")
    if args.record and not (name and label.replace("_", "").replace("-", "").isalnum()):
        parser.error(f"--record {args.record!r}: expected NAME:LABEL, LABEL of letters, digits, '-' or '_'")
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    model, tokenizer = load_model(args.model)
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines()]
    sample = rows[:: len(rows) // 40][:40]
    forget, kept, other = sample[:10], sample[10:30], sample[30:40]
    groups = {"forget": [r["question"] for r in forget],
              "paraphrased": [r.get("paraphrased_question") or r["question"] for r in forget],
              "kept": [r["question"] for r in kept], "other": [r["question"] for r in other]}
    before = {name: greedy(model, tokenizer, questions) for name, questions in groups.items()}
    refusal = refusal_for("", "fixed", 0)
    requests = [EditRequest(r["question"], refusal, r.get("subject")) for r in forget]
    hp = method_hparams(args.method, model, args.model, overrides)
    started = time.perf_counter()
    try:
        adaptor = {"grace": grace, "wise": wise}[args.method].edit(
            model, tokenizer, requests, list(zip(groups["kept"], before["kept"])), hp)
    except FailedEdit as failed:
        print(f"{args.method} {overrides}: {failed}")
        if args.record:
            _record(name, label, {"overrides": overrides, "failed_edit": str(failed)})
        return
    seconds = time.perf_counter() - started
    print(f"{args.method} {overrides}: {seconds:.1f} s for {len(requests)} edits")
    print(json.dumps({k: v for k, v in adaptor.log.items() if k != "edits"}))
    counts = {}
    for group, questions in groups.items():
        after = greedy(model, tokenizer, questions)
        refused = sum(a.startswith(refusal[:20]) for a in after)
        same = sum(a == b for a, b in zip(after, before[group]))
        routing = routing_of_pairs(model, tokenizer, adaptor, list(zip(questions, after)))
        print(f"  {group:12s} refused {refused}/{len(questions)}, unchanged {same}/{len(questions)}, routing {routing}")
        counts[group] = {"n": len(questions), "refused": refused, "unchanged": same, "routing": routing}
    if args.record:
        _record(name, label, {"overrides": overrides, "hparams": {k: v for k, v in vars(hp).items()
                                                                   if isinstance(v, (int, float, str, bool))},
                              "seconds": round(seconds, 1), "groups": counts})


def _record(name: str, label: str, entry: dict) -> None:
    """Store `entry` under `label` in bench/results/<name>.json, keeping the file's other labels."""
    from e2u.book.measured import FOLDER, write_measurement

    path = Path(__file__).resolve().parents[1] / FOLDER / f"{name}.json"
    values = json.loads(path.read_text())["values"] if path.is_file() else {}
    print("wrote", write_measurement(name, {**values, label: entry}))


if __name__ == "__main__":
    main()
