"""Regression gate rules on hand-made frames (the real-model tests live in test_report_cli.py)."""
import json
import math

import pytest

from reports import check_against_baseline, format_check, freeze_baseline, read_baseline
from reports.results import ResultSet, normalize_frame
from reports.stats import wilson_interval
from robust_eval.schema import make_row, to_frame

N = 1000


def run(cells, seed=0, sha="a" * 64, model="m"):
    """cells: {(benchmark, eps): correct}."""
    rows = []
    for (benchmark, eps), correct in cells.items():
        fields = dict(model=model, checkpoint_sha256=sha, dataset="cifar10", benchmark=benchmark,
                      seed=seed)
        if benchmark == "attack":
            fields.update(attack="pgd", threat="linf", eps=eps, steps=10, restarts=1)
        rows.append(make_row(correct=correct, n=N, **fields))
    return ResultSet(normalize_frame(to_frame(rows)), source="test")


BASE = {("clean", None): 900, ("attack", 8 / 255): 450, ("attack", 2 / 255): 700}


def test_rule_is_ci_separation_plus_tolerance():
    baseline = freeze_baseline(run(BASE))
    assert len(baseline["cells"]) == 3 and baseline["key_columns"][0] == "model"
    # Drop of 30 per mille: intervals (n=1000) still overlap -> ok.
    small = check_against_baseline(run({**BASE, ("clean", None): 870}, seed=1), baseline)
    assert not small.failed and small.count("ok") == 3
    # A drop of 70: separated -> REGRESSED; the printed table names it.
    big = check_against_baseline(run({**BASE, ("attack", 8 / 255): 380}, seed=1), baseline)
    assert big.failed and big.count("REGRESSED") == 1
    text = format_check(big)
    assert "FAIL" in text and "eps=8/255" in text and "-7.00" in text
    assert "clean" not in text.split("\n", 3)[-1]  # passing cells are not listed by default
    # The tolerance is in percentage points on top of the interval gap.
    low_new = wilson_interval(380, N)[1]
    gap_pp = 100 * (baseline["cells"][1]["ci_low"] - low_new)
    assert not check_against_baseline(run({**BASE, ("attack", 8 / 255): 380}), baseline,
                                      tolerance_pp=gap_pp + 0.01).failed
    assert check_against_baseline(run({**BASE, ("attack", 8 / 255): 380}), baseline,
                                  tolerance_pp=gap_pp - 0.01).failed


def test_key_ignores_seed_and_checkpoint_and_survives_csv(tmp_path):
    from reports import load_results

    baseline = freeze_baseline(run(BASE))
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    frame = run(BASE, seed=9, sha="c" * 64).frame
    frame.to_csv(tmp_path / "results.csv", index=False)  # eps goes through text and back
    result = check_against_baseline(load_results(tmp_path), read_baseline(path))
    assert result.count("ok") == 3 and not result.failed


def test_missing_new_and_improved_cells():
    baseline = freeze_baseline(run(BASE))
    cells = {("clean", None): 990, ("attack", 8 / 255): 450, ("attack", 4 / 255): 600}
    result = check_against_baseline(run(cells), baseline)
    statuses = dict(zip(result.table["eps"], result.table["status"]))
    assert statuses == {"": "improved", "0.031372549": "ok", "0.00784313725": "MISSING",
                        "0.0156862745": "new"}
    assert result.failed
    text = format_check(result, show_all=True)
    assert "new" in text and "MISSING" in text and "improved" in text


def test_other_model_is_missing_not_compared():
    baseline = freeze_baseline(run(BASE))
    result = check_against_baseline(run(BASE, model="other"), baseline)
    assert result.count("MISSING") == 3 and result.count("new") == 3


def test_failed_cells_and_frozen_failures():
    rows = run(BASE).frame.astype({"status": object, "error": object})
    rows.loc[0, ["status", "error", "accuracy"]] = ["failed", "oom", math.nan]
    baseline = freeze_baseline(ResultSet(rows, source="x"))
    assert len(baseline["cells"]) == 2 and baseline["failed_cells"][0]["benchmark"] == "clean"
    new = run(BASE).frame.astype({"status": object, "error": object})
    new.loc[1, ["status", "error", "accuracy"]] = ["failed", "oom", math.nan]
    result = check_against_baseline(ResultSet(new, source="y"), baseline)
    assert result.count("FAILED") == 1 and result.failed


def test_bad_baselines(tmp_path):
    path = tmp_path / "b.json"
    path.write_text("[]")
    with pytest.raises(ValueError, match="not a robust-eval baseline"):
        read_baseline(path)
    good = freeze_baseline(run(BASE))
    path.write_text(json.dumps({**good, "version": 99}))
    with pytest.raises(ValueError, match="version 99 unsupported"):
        read_baseline(path)
    path.write_text(json.dumps({**good, "key_columns": ["model"]}))
    with pytest.raises(ValueError, match="re-freeze"):
        read_baseline(path)
    with pytest.raises(FileNotFoundError):
        read_baseline(tmp_path / "none.json")
    with pytest.raises(ValueError, match="no successful cells"):
        freeze_baseline(ResultSet(normalize_frame(to_frame(
            [make_row(correct=0, n=0, model="m", benchmark="spectral")])), source="s"))
    with pytest.raises(ValueError, match="tolerance"):
        check_against_baseline(run(BASE), good, tolerance_pp=-1)
