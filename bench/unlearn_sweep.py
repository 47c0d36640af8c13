"""How the embedded model's unlearning learning rates are chosen: on a held-out draw, from a grid whose chosen
value lies inside it.

Each baseline trains at each learning rate of a grid on a setting of the default study drawn with a seed the
book does not report (`--seed 3`: the study reports seeds 0, 1, 2): pretrained, 10 factual questions to forget
and 20 to keep drawn by seed 3; finetuned, 10 of the forget edge's 20 questions drawn by seed 3 (the edge and its
retain model are the study's; its 20 questions are shared by every draw). Each run is scored by greedy Rouge1
recall on its forget and kept questions, and by the combined score 1 - Rouge1(forget) + Rouge1(retain).
`--choose` reads both settings' rows and gives each method the learning rate with the best mean combined score
over the two settings, and says whether it lies inside the grid; `--complete` runs what the joint choice still
needs (a learning rate one setting tried in the other, the next value past the joint grid's edge); `--apply`
writes the choices into the method files. Rows are kept in `bench/results/lr_sweep.json` (the book's `measured` role reads
it); a run already there is not repeated.

    E2U_HOME=... OMP_NUM_THREADS=1 python bench/unlearn_sweep.py --setting pretrained --lr 1e-4 3e-4 1e-3 3e-3
    python bench/unlearn_sweep.py --complete && python bench/unlearn_sweep.py --apply
"""

from __future__ import annotations

import argparse
import copy
import fcntl
import json
import time
from contextlib import contextmanager
from pathlib import Path

import yaml
from tqdm import tqdm

from e2u.book.measured import FOLDER, write_measurement
from e2u.cell.data import load_splits
from e2u.cell.params import CellParams
from e2u.cell.run import retain_records
from e2u.cell.setting_models import prepare_setting_model, setting_finetune_jobs, setting_models
from e2u.evaluation.evaluate import generate_answers
from e2u.evaluation.metrics import is_refusal, mean
from e2u.evaluation.paper_metrics import rouge1_recall
from e2u.files import SOURCE_ROOT, atomic_path
from e2u.hparams import DEFAULTS_DIR
from e2u.methods import METHODS, method_hparams
from e2u.model.load import load_model
from e2u.model.prompts import question_ids
from e2u.problem import UnlearningProblem

NAME = "lr_sweep"
MODEL = "smollm2-135m-instruct"
HELD_OUT_SEED = 3


def setting_data(setting: str, seed: int) -> dict:
    """The default study's data options for `setting`, drawn with `seed`."""
    if setting == "pretrained":
        return {"data_source": "factual", "data_options": {"n_forget": 10, "n_retain": 20, "seed": seed}}
    return {"data_source": "pistol", "data_options": {"seed": 0, "forget_edges": ["A_B"], "forget_questions": 10,
                                                      "forget_sample": seed, "retain_eval": 20}}


def target_model(params: CellParams) -> str:
    """The setting's model to unlearn from: the base model, or the finetuned target (trained unless cached; the
    retain model, which a sweep does not use, is not trained)."""
    if params.data_source != "pistol":
        return setting_models(params.model, params.data_source, params.data_options, params.retain_model, None,
                              params.finetune, params.data_path).target
    prepare_setting_model(params.model, params.data_source, params.data_options, "target", params.finetune,
                          params.data_path)
    jobs = setting_finetune_jobs(params.model, params.data_source, params.data_options, params.finetune,
                                 params.data_path)[2]
    return str(next(job for job in jobs if job.role == "target").path)


def score(model, tokenizer, records) -> tuple[float, float]:
    answers = generate_answers(model, tokenizer, [question_ids(tokenizer, r.question) for r in records], 32, 32)
    return mean(rouge1_recall(answers, [r.answer for r in records])), mean(float(is_refusal(a)) for a in answers)


@contextmanager
def sweep_lock():
    """An exclusive lock on the rows file's folder (two settings' processes append to one file)."""
    folder = SOURCE_ROOT / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".{NAME}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def stored_rows() -> list[dict]:
    path = SOURCE_ROOT / FOLDER / f"{NAME}.json"
    return json.loads(path.read_text())["values"]["rows"] if path.is_file() else []


HALF_DECADES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)


def beyond_edge(rows: list[dict], setting: str, method: str, seed: int) -> float | None:
    """The next half-decade past the grid's edge where `method`'s best run in `setting` lies, None if it is inside."""
    mine = [r for r in rows if r["method"] == method and r["setting"] == setting and r["seed"] == seed]
    chosen = choose(mine).get(method)
    if not chosen or chosen["inside"]:
        return None
    grid = sorted({r["lr"] for r in mine})
    if chosen["lr"] == grid[0]:
        lower = [lr for lr in HALF_DECADES if lr < grid[0] * 0.99]
        return lower[-1] if lower else None
    higher = [lr for lr in HALF_DECADES if lr > grid[-1] * 1.01]
    return higher[0] if higher else None


def sweep(setting: str, methods: list[str], lrs: list[float], seed: int, extend: bool = False) -> None:
    """Each method at each of `lrs`; with `extend`, then at the next half-decade past its grid's edge while its best
    run in this setting lies there."""
    for method in methods:
        run_grid(setting, method, lrs, seed)
        while extend and (beyond := beyond_edge(stored_rows(), setting, method, seed)) is not None:
            run_grid(setting, method, [beyond], seed)


def run_grid(setting: str, method: str, lrs: list[float], seed: int) -> None:
    rows = stored_rows()
    done = {(r["setting"], r["method"], r["lr"], r["seed"]) for r in rows}
    if all((setting, method, lr, seed) in done for lr in lrs):
        return
    methods = [method]
    params = CellParams(setting=setting, method="gradient_ascent", **setting_data(setting, seed))
    model, tokenizer = load_model(target_model(params))
    splits = load_splits(model, tokenizer, params.data_source, params.data_path or None, params.data_options,
                         params.batch_size)
    forget, retain = list(splits["forget"]), retain_records(splits)
    kept = list(splits.get("retain") or splits.get("neighbour"))
    f0, r0 = score(model, tokenizer, forget)[0], score(model, tokenizer, kept)[0]
    print(f"{setting}, seed {seed}: before unlearning forget Rouge1 {f0:.3f}, retain Rouge1 {r0:.3f}", flush=True)
    todo = [(name, lr) for name in methods for lr in lrs if (setting, name, lr, seed) not in done]
    for name, lr in tqdm(todo, desc=f"{setting} runs"):
        trained = copy.deepcopy(model)
        hp = method_hparams(name, trained, params.model, {"lr": lr, "curve_points": 0, "seed": seed})
        started = time.perf_counter()
        deltas = METHODS[name].apply(trained, tokenizer, UnlearningProblem(forget, retain, seed=seed), hp)
        seconds = time.perf_counter() - started
        forget_r1, refusal = score(trained, tokenizer, forget)
        retain_r1 = score(trained, tokenizer, kept)[0]
        with sweep_lock():  # the other setting's process may add rows meanwhile
            rows = stored_rows()
            rows.append({"setting": setting, "method": name, "lr": lr, "seed": seed, "epochs": hp.epochs,
                         "steps": deltas.log["steps"], "seconds": round(seconds, 1),
                         "forget_rouge1": round(forget_r1, 4), "retain_rouge1": round(retain_r1, 4),
                         "combined": round(1 - forget_r1 + retain_r1, 4), "refusal": round(refusal, 4),
                         "before": {"forget_rouge1": round(f0, 4), "retain_rouge1": round(r0, 4)},
                         "stopped": deltas.log.get("stopped", "")})
            write_measurement(NAME, {"rows": rows, "choice": choose(rows)})
        print(f"{name:<20} lr {lr:<8.1e} {seconds:6.1f} s  forget {forget_r1:.3f} retain {retain_r1:.3f} "
              f"combined {1 - forget_r1 + retain_r1:.3f} refusal {refusal:.2f}", flush=True)


def choose(rows: list[dict]) -> dict:
    """{method: {"lr", "mean_combined", "grid", "inside"}}: the learning rate with the best mean combined score over
    the settings every one of its runs has, and whether a smaller and a larger value were tried beside it."""
    out = {}
    for method in sorted({r["method"] for r in rows}):
        mine = [r for r in rows if r["method"] == method]
        settings = sorted({r["setting"] for r in mine})
        grid = sorted({r["lr"] for r in mine if all(any(x["lr"] == r["lr"] and x["setting"] == s for x in mine)
                                                    for s in settings)})
        if not grid:
            continue
        means = {lr: sum(r["combined"] for r in mine if r["lr"] == lr) / len(settings) for lr in grid}
        best = max(grid, key=lambda lr: means[lr])
        out[method] = {"lr": best, "mean_combined": round(means[best], 4), "settings": settings,
                       "grid": {f"{lr:.0e}": round(m, 4) for lr, m in means.items()},
                       "inside": grid[0] < best < grid[-1]}
    return out


def complete_joint_grids(methods: list[str], seed: int, settings: tuple[str, ...] = ("pretrained", "finetuned"),
                         rounds: int = 3) -> None:
    """Run every learning rate a method has in one setting in the others too, then the next half-decade past the
    joint grid's edge in all of them while the joint choice lies there (at most `rounds` times)."""
    for _ in range(rounds + 1):
        rows = [r for r in stored_rows() if r["seed"] == seed]
        for method in methods:
            tried = sorted({r["lr"] for r in rows if r["method"] == method})
            for setting in settings:
                missing = [lr for lr in tried if not any(r["method"] == method and r["setting"] == setting
                                                         and r["lr"] == lr for r in rows)]
                if missing:
                    run_grid(setting, method, missing, seed)
        rows = [r for r in stored_rows() if r["seed"] == seed]
        edges = {}
        for method, c in choose(rows).items():
            if method in methods and not c["inside"]:
                grid = sorted(float(lr) for lr in c["grid"])
                beyond = ([lr for lr in HALF_DECADES if lr < grid[0] * 0.99][-1:] if c["lr"] == grid[0]
                          else [lr for lr in HALF_DECADES if lr > grid[-1] * 1.01][:1])
                if beyond:
                    edges[method] = beyond[0]
        if not edges:
            return
        for method, lr in edges.items():
            for setting in settings:
                run_grid(setting, method, [lr], seed)


def apply_choices(rows: list[dict], settings: tuple[str, ...] = ("finetuned", "pretrained")) -> list[Path]:
    """Write each method's chosen learning rate into `hparams/<method>.yaml` (the embedded model's entry), with a
    comment citing the sweep; refuse while a choice lacks a setting or lies at its grid's edge."""
    written = []
    for method, c in choose(rows).items():
        if tuple(c["settings"]) != settings or not c["inside"]:
            raise SystemExit(f"{method}: not applied: chosen over {c['settings']}, inside the grid: {c['inside']} "
                             f"(grid {c['grid']})")
    for method, c in choose(rows).items():
        path = DEFAULTS_DIR / f"{method}.yaml"
        table = yaml.safe_load(path.read_text()) if path.is_file() else {}
        table = table or {}
        table.setdefault("default", {})
        table.setdefault("model", {}).setdefault(MODEL, {})["lr"] = c["lr"]
        grid = ", ".join(f"{lr} {m:.3f}" for lr, m in c["grid"].items())
        header = (f"# {method} on the embedded model: lr {c['lr']:.1e}, the best mean combined score over both settings\n"
                  f"# on the held-out draw (seed {HELD_OUT_SEED}), inside its grid: `python bench/unlearn_sweep.py "
                  f"--choose`\n# (bench/results/lr_sweep.json). Mean combined score by lr: {grid}.\n")
        with atomic_path(path, ".yaml") as tmp:
            tmp.write_text(header + yaml.safe_dump(table, sort_keys=False))
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=["pretrained", "finetuned"], default="pretrained")
    parser.add_argument("--methods", nargs="*", default=[n for n, m in METHODS.items() if m.kind == "unlearning"])
    parser.add_argument("--lr", nargs="*", type=float, default=[1e-4, 3e-4, 1e-3, 3e-3])
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="the draw (the study reports 0, 1, 2)")
    parser.add_argument("--extend", action="store_true", help="go on past the grid's edge while the best lies there")
    parser.add_argument("--choose", action="store_true", help="print each method's choice from the stored rows")
    parser.add_argument("--apply", action="store_true", help="write the choices into lib/e2u/hparams/<method>.yaml")
    parser.add_argument("--complete", action="store_true",
                        help="fill every method's grid in both settings and extend it until the joint choice is inside")
    args = parser.parse_args()
    if args.apply:
        for path in apply_choices(stored_rows()):
            print(f"wrote {path}")
        return
    if args.complete:
        complete_joint_grids(args.methods, args.seed)
    elif not args.choose:
        sweep(args.setting, args.methods, args.lr, args.seed, args.extend)
    for method, c in choose(stored_rows()).items():
        where = "inside the grid" if c["inside"] else "AT THE GRID'S EDGE: run the next value beyond it"
        print(f"{method:<20} lr {c['lr']:.0e} (mean combined {c['mean_combined']:.3f} over {', '.join(c['settings'])}; "
              f"grid {c['grid']}): {where}")


if __name__ == "__main__":
    main()
