"""How the embedded model's unlearning defaults were chosen: each baseline trained at a few learning rates on a
setting of the default study, then scored by greedy Rouge1 recall on its forget and retain questions and by the
refusal rate on forget (the numbers the book reports). Prints one row per run; `hparams/unlearning.yaml` and
`hparams/<method>.yaml` cite the rows they took.

    E2U_HOME=... OMP_NUM_THREADS=1 python bench/unlearn_sweep.py --setting pretrained --lr 2e-4 1e-3 [--methods npo rmu]
"""

from __future__ import annotations

import argparse
import copy
import time

from tqdm import tqdm

from e2u.cell.data import load_splits
from e2u.cell.params import CellParams
from e2u.cell.run import retain_records
from e2u.cell.setting_models import setting_models
from e2u.evaluation.evaluate import generate_answers
from e2u.evaluation.metrics import is_refusal, mean
from e2u.evaluation.paper_metrics import rouge1_recall
from e2u.methods import METHODS, method_hparams
from e2u.model.load import load_model
from e2u.model.prompts import question_ids
from e2u.problem import UnlearningProblem

SETTINGS = {"pretrained": {"data_source": "factual", "data_options": {"n_forget": 10, "n_retain": 20, "seed": 0}},
            "finetuned": {"data_source": "pistol", "data_options": {"seed": 0, "retain_eval": 20}}}


def score(model, tokenizer, records) -> tuple[float, float]:
    answers = generate_answers(model, tokenizer, [question_ids(tokenizer, r.question) for r in records], 32, 32)
    return mean(rouge1_recall(answers, [r.answer for r in records])), mean(float(is_refusal(a)) for a in answers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="pretrained")
    parser.add_argument("--methods", nargs="*", default=[n for n, m in METHODS.items() if m.kind == "unlearning"])
    parser.add_argument("--lr", nargs="*", type=float, default=[2e-4, 1e-3])
    parser.add_argument("--epochs", type=int, default=0, help="0: the defaults' epochs")
    args = parser.parse_args()
    params = CellParams(setting=args.setting, method="gradient_ascent", **SETTINGS[args.setting])
    models = setting_models(params.model, params.data_source, params.data_options, params.retain_model, None,
                            params.finetune, params.data_path)
    model, tokenizer = load_model(models.target)
    splits = load_splits(model, tokenizer, params.data_source, params.data_path or None, params.data_options,
                         params.batch_size)
    forget, retain = list(splits["forget"]), retain_records(splits)
    kept = list(splits.get("retain") or splits.get("neighbour"))
    f0, r0 = score(model, tokenizer, forget)[0], score(model, tokenizer, kept)[0]
    print(f"{args.setting}: before unlearning forget Rouge1 {f0:.3f}, retain Rouge1 {r0:.3f}", flush=True)
    print("method               lr       epochs steps  seconds  forget_R1 retain_R1 combined refusal  stopped")
    for name in tqdm(args.methods, desc="methods"):
        for lr in args.lr:
            trained = copy.deepcopy(model)
            overrides = {"lr": lr, "curve_points": 0, **({"epochs": args.epochs} if args.epochs else {})}
            hp = method_hparams(name, trained, params.model, overrides)
            started = time.perf_counter()
            deltas = METHODS[name].apply(trained, tokenizer, UnlearningProblem(forget, retain, seed=0), hp)
            seconds = time.perf_counter() - started
            forget_r1, refusal = score(trained, tokenizer, forget)
            retain_r1 = score(trained, tokenizer, kept)[0]
            print(f"{name:<20} {lr:<8.1e} {hp.epochs:<6} {deltas.log['steps']:<6} {seconds:<8.1f} {forget_r1:<9.3f} "
                  f"{retain_r1:<9.3f} {1 - forget_r1 + retain_r1:<8.3f} {refusal:<8.2f} {deltas.log.get('stopped', '')}",
                  flush=True)


if __name__ == "__main__":
    main()
