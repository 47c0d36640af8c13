"""Where researchers work: pyproject.toml declares ranges, not pins; the lock, the conda file and the stacks the
tests run on agree with them; `make install` keeps the torch of an environment it did not create."""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
STACK_PACKAGES = ("torch", "transformers", "peft", "datasets", "accelerate")


def requirements() -> dict[str, Requirement]:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {Requirement(line).name: Requirement(line) for line in declared}


def makefile_list(name: str) -> list[str]:
    match = re.search(rf"^{name} := (.*)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert match, f"the Makefile defines no {name}"
    return match.group(1).split()


def test_no_dependency_is_pinned_exactly():
    pinned = [str(r) for r in requirements().values() if any(s.operator in ("==", "===") for s in r.specifier)]
    assert not pinned, f"pyproject.toml pins {pinned}: the library declares ranges (the lock pins)"


def test_the_lock_lies_inside_the_ranges():
    locked = dict(line.split("==", 1) for line in (REPO / "requirements-lock.txt").read_text().splitlines()
                  if "==" in line and not line.startswith("#"))
    locked = {Requirement(name).name.lower().replace("_", "-"): version.strip() for name, version in locked.items()}
    for name, requirement in requirements().items():
        version = locked.get(name.lower().replace("_", "-"))
        assert version is not None, f"requirements-lock.txt has no {name}"
        assert requirement.specifier.contains(version, prereleases=True), f"lock {name}=={version} outside {requirement}"


def test_the_floor_stack_is_the_declared_floors():
    floors = dict(item.split("==") for item in makefile_list("FLOOR_PACKAGES"))
    assert set(floors) == set(STACK_PACKAGES) and set(makefile_list("LATEST_PACKAGES")) == set(STACK_PACKAGES)
    for name, version in floors.items():
        lowest = [Version(s.version) for s in requirements()[name].specifier if s.operator == ">="]
        assert lowest == [Version(version)], f"make test-floor installs {name}=={version}, pyproject.toml's floor is {lowest}"


def test_the_conda_file_mirrors_pyproject():
    conda = yaml.safe_load((REPO / "environment.yml").read_text())["dependencies"]
    pip = next(item["pip"] for item in conda if isinstance(item, dict))
    declared = {Requirement(line).name: Requirement(line).specifier for line in pip if not line.startswith("-")}
    declared["torch"] = Requirement(next(d for d in conda if isinstance(d, str) and d.startswith("pytorch"))
                                    .replace("pytorch", "torch")).specifier
    declared.pop("pytest")
    assert declared == {name: r.specifier for name, r in requirements().items()}


def install_plan(**environment) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")} | environment
    return subprocess.run(["make", "-s", "--no-print-directory", "install-plan"], cwd=REPO, env=env,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_an_active_environment_keeps_its_torch_and_gets_the_ranges(tmp_path):
    """A researcher's environment (here a new one that sees this one's packages, torch among them)."""
    venv.create(tmp_path / "env", with_pip=False)
    purelib = next((tmp_path / "env" / "lib").glob("python3*/site-packages"))
    (purelib / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    plan = install_plan(VIRTUAL_ENV=str(tmp_path / "env"))
    assert plan.startswith("ranges: installing into the active environment") and f"torch {metadata.version('torch')} kept" in plan
    assert install_plan(CONDA_PREFIX=str(tmp_path / "env")).startswith("ranges: installing into the active environment")


def test_the_projects_own_environment_gets_the_lock_when_activated():
    if (sys.version_info[:2], os.uname().machine) != ((3, 11), "x86_64") or Path(sys.prefix) != REPO / ".venv":
        pytest.skip("the lock is for the project's .venv on CPython 3.11 / x86_64; these tests run elsewhere")
    assert install_plan(VIRTUAL_ENV=sys.prefix) == "lock: requirements-lock.txt into .venv"


def test_asking_for_no_lock_resolves_the_ranges():
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    plan = subprocess.run(["make", "-s", "--no-print-directory", "install-plan", "LOCK=", f"PYTHON={sys.executable}"],
                          cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert plan.startswith("ranges: LOCK= asks for pyproject.toml's ranges")
