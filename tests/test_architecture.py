"""The architecture is a checked contract (`.importlinter`): layers by stage of the data flow, no import
loops, and no arrow from the library up to the recipes, the evaluation or the command-line modules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("tops_plugin", "recipes", "evals")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the packages under `root`, in a fresh interpreter that imports them from there."""
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='.importlinter', no_cache=True, no_logo=True))")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_import_contracts_are_kept():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 kept, 0 broken" in result.stdout


def test_the_contracts_fail_on_an_upward_import_and_on_a_loop(tmp_path):
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".importlinter", tmp_path)
    with open(tmp_path / "tops_plugin" / "judging" / "rows.py", "a") as handle:
        handle.write("\nimport recipes.work  # the library reaching up into the launcher\n")
    with open(tmp_path / "tops_plugin" / "selection" / "openrlhf.py", "a") as handle:
        handle.write("\nfrom tops_plugin.selection import seeds  # seeds imports openrlhf: a loop\n")
    with open(tmp_path / "evals" / "report.py", "a") as handle:
        handle.write("\nimport evals.harness  # a view reaching up into the run it reports\n")
    with open(tmp_path / "recipes" / "manifest.py", "a") as handle:
        handle.write("\nimport recipes.rl  # the run's records reaching up into one stage's files\n")

    result = lint_imports(tmp_path)

    assert result.returncode != 0
    out = result.stdout
    assert "The library never imports the recipes or the evaluation BROKEN" in out
    assert "tops_plugin.judging.rows -> recipes.work" in out
    assert "No import loops between the modules of any package BROKEN" in out
    assert "No cycles are allowed in tops_plugin.selection." in out
    assert "Layers: recipes > evals > commands > stages > generation > judging > the floor BROKEN" in out
    assert "Evaluation layers: commands > runs > sources, plots > report > floor BROKEN" in out
    assert "evals.report -> evals.harness" in out
    assert "Recipe layers: command > planners > work > plans > config BROKEN" in out
    assert "recipes.manifest -> recipes.rl" in out
