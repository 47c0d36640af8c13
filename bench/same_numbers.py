"""Do two commits, or two stacks, compute the same numbers? Each commit's library runs the tiny-model study of
tests/cell/test_every_method_every_source.py (every method on TOFU- and real-world-format files and the fictional
authors) and the embedded model's pretrained cells (studies/same-numbers.yaml), each in its own `$E2U_HOME`;
`e2u compare` then checks every per-item number. Prints the ratio of the two runs' study times.

    python bench/same_numbers.py BASE [OTHER]     (OTHER: the working tree; about 25 minutes a side on 2 cores)
    python bench/same_numbers.py "" "" --base-python .venv/bin/python --other-python .venv-latest/bin/python \
        --only same-numbers                       (the working tree on two stacks: the lock and make test-latest's)
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tiny_study(folder: Path) -> Path:
    """The tests' every-method study on a tiny random model, written once so that both sides read the same files."""
    sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "data"), str(REPO / "tests" / "cell")]
    import torch
    from conftest import saved_tiny_model
    from test_every_method_every_source import TINY_HPARAMS
    from test_loaders import realworld_dir, tofu_dir

    torch.manual_seed(0)
    folder.mkdir(parents=True)
    study = folder / "study.yaml"
    study.write_text(
        f"name: every\nmodel: {saved_tiny_model(folder)}\nevaluation: {{max_new_tokens: 3, batch_size: 8}}\nsettings:\n"
        f"  - {{name: tofu, data: {{source: tofu, path: {tofu_dir(folder)}, forget_split: forget01}}}}\n"
        f"  - {{name: realworld, data: {{source: realworld, path: {realworld_dir(folder)}}}}}\n"
        "  - {name: fictional, data: {source: fictional, n_authors: 2, retain_eval: 4},"
        " finetune: {train_layers: 2, epochs: 1}}\n"
        "methods:\n" + "".join(f"  - {{name: {m}, hparams: {hp}}}\n" for m, hp in TINY_HPARAMS.items()))
    return study


def run_side(tree: Path, out: Path, studies: list[Path], python: str) -> float:
    """Every study run with the library of `tree` by the interpreter `python`; the seconds it took."""
    env = {**os.environ, "PYTHONPATH": str(tree / "lib"), "E2U_HOME": str(out / "home"), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    subprocess.run([python, "-m", "e2u.cli", "prepare"], env=env, cwd=out, check=True)
    for study in studies:
        subprocess.run([python, "-m", "e2u.cli", "study", "run", str(study), "--results", "results",
                        "--book", "book", "--workers", "1", "--no-progress"], env=env, cwd=out, check=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="a commit")
    parser.add_argument("other", nargs="?", default="", help="another commit (default: the working tree)")
    parser.add_argument("--base-python", default=sys.executable, help="the interpreter (its stack) of the base side")
    parser.add_argument("--other-python", default=sys.executable, help="the interpreter of the other side")
    parser.add_argument("--only", choices=("every", "same-numbers"), help="one of the two studies")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="e2u-same-numbers-"))
    names = [args.only] if args.only else ["every", "same-numbers"]
    studies = [tiny_study(work / "tiny") if name == "every" else REPO / "studies" / "same-numbers.yaml" for name in names]
    seconds, trees = {}, {}
    pythons = {"base": args.base_python, "other": args.other_python}
    for side, rev in (("base", args.base), ("other", args.other)):
        trees[side] = REPO if not rev else work / f"tree-{side}"
        if rev:
            subprocess.run(["git", "worktree", "add", "--detach", str(trees[side]), rev], cwd=REPO, check=True)
        (work / side).mkdir()
        seconds[side] = run_side(trees[side], work / side, studies, pythons[side])
        print(f"{side} ({rev or 'working tree'}, {pythons[side]}): {seconds[side]:.0f} s")
    status = 0
    for name in names:
        status |= subprocess.run([sys.executable, "-m", "e2u.cli", "compare", str(work / "base" / "results" / name),
                                  str(work / "other" / "results" / name)],
                                 env={**os.environ, "PYTHONPATH": str(REPO / "lib")}).returncode
    print(f"study time, other / base: {seconds['other'] / seconds['base']:.2f}")
    for side, tree in trees.items():
        if tree != REPO:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=False)
    return status


if __name__ == "__main__":
    sys.exit(main())
