"""`robust-eval compare` on folders written by `robust-eval evaluate --out` (conftest.py)."""
import json
import shutil

import pytest

from robust_eval.cli import main

pytestmark = pytest.mark.slow  # shares the trained digits models of conftest.py

FIELDS = {"model", "reference", "scope", "benchmark", "corruption", "severity", "attack", "eps",
          "n", "delta", "ci_low", "ci_high", "p_value", "p_adjusted", "significant", "method"}


def test_two_folders_one_model_name(digits_runs, tmp_path, capsys):
    out_json = tmp_path / "compare.json"
    assert main(["compare", str(digits_runs["base"]), str(digits_runs["worse"]),
                 "--reference", "base/digits_cnn", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("worse/digits_cnn vs base/digits_cnn: 5 cells + 3 aggregates; "
                               "8 significantly worse, 0 significantly better")
    assert lines[1] == "method: paired McNemar: 5; paired bootstrap: 3"
    deltas = [float(line.split("[")[0].split()[-1]) for line in lines[4:] if line.strip()]
    assert deltas == sorted(deltas) and deltas[0] < -15  # worst first
    records = json.loads(out_json.read_text())
    assert len(records) == 8 and all(FIELDS <= set(r) for r in records)
    overall = next(r for r in records if r["aggregate"] == "corruption mean (2 corruptions, "
                                                            "2 severities)")
    assert overall["scope"] == "aggregate" and overall["verdict"] == "worse"
    assert overall["significant"] and overall["ci_high"] < 0 and overall["n"] == 360
    clean = next(r for r in records if r["benchmark"] == "clean")
    assert clean["method"] == "paired McNemar" and clean["delta"] < -10
    assert clean["p_adjusted"] >= clean["p_value"]


def test_one_folder_two_models_and_the_unpaired_fallback(digits_runs, digits_checkpoints,
                                                         digits_tools, tmp_path, capsys):
    folder = tmp_path / "both"
    shutil.copytree(digits_runs["rerun"], folder)
    digits_tools.evaluate(digits_checkpoints["good"], folder, name="digits_cnn_again")
    capsys.readouterr()
    assert main(["compare", str(folder), "--reference", "digits_cnn"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("digits_cnn_again vs digits_cnn: 5 cells + 3 aggregates; "
                          "0 significantly worse, 0 significantly better")
    (folder / "outcomes.parquet").unlink()
    assert main(["compare", str(folder), "--reference", "digits_cnn"]) == 0
    out = capsys.readouterr().out
    assert "unpaired: 8 of 8 tests, unpaired (reference has no per-example outcomes)" in out


def test_bad_input(digits_runs, tmp_path, capsys):
    assert main(["compare", str(digits_runs["base"]), "--reference", "nope"]) == 2
    err = capsys.readouterr().err
    assert "reference model 'nope' is not in" in err and "(models: digits_cnn)" in err
    assert main(["compare", str(digits_runs["base"]), "--reference", "digits_cnn"]) == 2
    assert "no model besides 'digits_cnn'" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "none"), "--reference", "m"]) == 2
    assert "results not found" in capsys.readouterr().err
