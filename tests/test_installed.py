"""e2u installed as a user installs it (`pip install .`, not editable) runs a study from another directory: the
notebook templates and the hyper-parameter YAML travel as package data, and `python -m e2u` is the command."""

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


@pytest.mark.slow
def test_a_non_editable_install_runs_a_tiny_study_from_another_directory(tmp_path):
    (tmp_path / "source").mkdir()
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    target_site = Path(subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    # the dependencies come from this environment (nothing is downloaded), e2u itself from a wheel of the checkout
    (target_site / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    source = tmp_path / "source"  # a copy: pip builds in the source tree, and the checkout stays as it is
    for name in ("pyproject.toml", "README.md", "lib", "notebooks"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, source / name, **({"symlinks": True, "ignore": shutil.ignore_patterns("*.egg-info", "__pycache__")}
                                            if copy is shutil.copytree else {}))
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(source)],
                   check=True, cwd=tmp_path, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
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
