"""The `e2u` command's niceties: `--version`, `-v` after the subcommand too, Dask's dashboard on request."""

from __future__ import annotations

import logging
import re
import sys
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "study"))
from test_study_end_to_end import write_tiny_study  # noqa: E402 (the tiny study lives with the study tests)

from e2u.cli import main  # noqa: E402
from e2u.study import executor  # noqa: E402


def test_version_prints_the_installed_package_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"e2u {metadata.version('e2u')}"


@pytest.mark.parametrize("argv, level", [
    (["study", "run", "missing.yaml", "-v"], logging.INFO),
    (["-v", "study", "run", "missing.yaml"], logging.INFO),
    (["study", "run", "missing.yaml"], logging.WARNING),
    (["compare", "a", "b", "--verbose"], logging.INFO),
    (["eval", "missing.yaml", "pretrained", "--model", "m", "-v"], logging.INFO),  # every subcommand, the last too
    (["export", "missing-study", "-v"], logging.INFO),
])
def test_verbose_is_accepted_before_and_after_the_subcommand(monkeypatch, capsys, argv, level):
    configured = {}
    monkeypatch.setattr(logging, "basicConfig", lambda **options: configured.update(options))
    assert main(argv) == 2  # the missing file or folder: an e2u error, not argparse's "unrecognized arguments"
    assert configured["level"] == level and "e2u: error:" in capsys.readouterr().err


def test_the_dashboard_starts_only_on_request_and_its_address_is_printed(tmp_path, monkeypatch, capsys):
    study_file = write_tiny_study(tmp_path)
    served = []

    def run_plan(client, plan, progress=True):  # the cluster is up: does it serve the dashboard's page?
        try:
            served.append(urllib.request.urlopen(client.dashboard_link, timeout=10).status)
        except urllib.error.HTTPError as refused:
            served.append(refused.code)
        return [], []

    monkeypatch.setattr(executor, "run_plan", run_plan)
    common = ["--results", str(tmp_path / "results"), "--book", str(tmp_path / "book"), "--workers", "1",
              "--no-progress"]
    assert main(["study", "run", str(study_file), *common, "--dashboard", "0"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"Dask dashboard: http://[^ ]+:\d+/status", printed) and served == [200]
    assert main(["study", "run", str(study_file), *common]) == 0  # by default: no dashboard, nothing printed
    assert "dashboard" not in capsys.readouterr().out and served == [200, 404]
