"""How many forget questions of a TOFU-style factual file get a paraphrase, and from where (data, model, rules).

A factual file such as PISTOL's `factual_data.json` (TOFU's real-author and world-fact questions, a JSON array of
{question, answer}) has no paraphrases, so the rephrase attack depends on the model's rewrites and on the rules
(`e2u.data.rephrase.rephrase_forget`). This reads the file as the `factual` source does (subjects guessed by
`tofu.subject_from_question`), asks the model to rewrite every question (not only the known ones: rewriting does
not depend on knowing) and prints, per question, where its paraphrase came from, and the counts. The default
file is tests/data/fixtures/tofu_style_factual.json: 40 questions in the form of TOFU's two sets, written for
this project. `--write` also writes the counts to bench/results/rephrase_acceptance.json.

    python bench/rephrase_acceptance.py [--data FILE] [--model smollm2-135m-instruct] [--write]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from e2u.book.measured import write_measurement
from e2u.data.factual import read_factual
from e2u.data.rephrase import rephrase_forget
from e2u.evaluation.evaluate import generate_answers
from e2u.model.load import load_model

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "fixtures" / "tofu_style_factual.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(FIXTURE), help="a factual file or TOFU directory (data.path)")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--write", action="store_true", help="write bench/results/rephrase_acceptance.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    questions, source = read_factual(args.data)
    records = [q.record for q in questions]
    model, tokenizer = load_model(args.model)
    with tempfile.TemporaryDirectory() as cache:  # a fresh generation, not an earlier cached one
        out, report = rephrase_forget(model, tokenizer, generate_answers, records, cache_dir=cache)
    for before, after in zip(records, out):
        print(f"{before.question!r}\n    -> {after.paraphrased_question!r}")
    print({k: report[k] for k in ("forget", "with_paraphrase", "by_source")})
    print("model rejections:", report["written_by_model"]["reasons"],
          "rules used:", report["written_by_rules"]["rules"])
    if args.write:
        model = report["written_by_model"]
        values = {"model": args.model, "data": Path(args.data).name, "source": Path(source).name,
                  "questions": report["forget"], "with_paraphrase": report["with_paraphrase"],
                  "by_source": report["by_source"],
                  "share_with_paraphrase": report["with_paraphrase"] / report["forget"],
                  "model_written": report["written_by_model"]["written"],
                  "model_rejected": report["written_by_model"]["rejected"],
                  "model_share": model["written"] / max(1, model["written"] + model["rejected"]),
                  "model_reasons": report["written_by_model"]["reasons"],
                  "rules_used": report["written_by_rules"]["rules"], "missing": report["missing"]}
        print("wrote", write_measurement("rephrase_acceptance", values))


if __name__ == "__main__":
    main()
