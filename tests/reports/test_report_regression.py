"""Regression gate rules on result sets with per-example outcomes (the real-model tests live in
tests/robust_eval/cli/test_report_cli.py)."""
import json
import math

import numpy as np
import pytest

from reports import check_against_baseline, format_check, freeze_baseline, read_baseline
from reports.regression import BASELINE_VERSION, validate_baseline
from reports.results import ResultSet, normalize_frame
from reports.stats import wilson_interval
from robust_eval.schema import make_row, to_frame

N = 1000
CORRUPTIONS = ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
               "motion_blur", "zoom_blur", "snow", "frost", "fog"]


def vectors(seed=0, n=N):
    """Realistic correctness: clean 90 %, corruptions 50-85 %."""
    rng = np.random.default_rng(seed)
    out = {"clean": rng.random(n) < 0.9}
    for i, name in enumerate(CORRUPTIONS):
        out[name] = rng.random(n) < 0.5 + 0.035 * i
    return out


def as_results(outcomes, vecs, model="m", **extra):
    cells = [({"model": model, "dataset": "cifar10", "benchmark": "clean", **extra},
              vecs["clean"])]
    cells += [({"model": model, "dataset": "cifar10", "benchmark": "corruption", "corruption": c,
                "severity": 3, **extra}, vecs[c]) for c in CORRUPTIONS]
    return outcomes[0](cells)


def rerun(vecs, seed, swaps=0.04):
    """Another corruption seed: examples near the boundary flip both ways (clean is fixed)."""
    rng = np.random.default_rng(seed)
    out = {"clean": vecs["clean"].copy()}
    for name in CORRUPTIONS:
        v = vecs[name].copy()
        flip = rng.random(len(v)) < swaps
        out[name] = np.where(flip, rng.random(len(v)) < v.mean(), v)
    return out


def test_paired_gate_catches_a_drop_the_interval_rule_misses(outcomes):
    base = vectors()
    new = dict(base, gaussian_noise=outcomes[1](outcomes[1](base["gaussian_noise"], 30), 5,
                                                seed=1, to=True))
    baseline = freeze_baseline(as_results(outcomes, base))
    result = check_against_baseline(as_results(outcomes, new), baseline)
    row = result.table[result.table["corruption"] == "gaussian_noise"].iloc[0]
    assert row["delta"] == pytest.approx(-2.5) and row["method"] == "paired McNemar"
    assert row["status"] == "REGRESSED" and result.failed
    # The old rule (new CI high < baseline CI low) sees overlapping intervals here.
    correct = int(base["gaussian_noise"].sum())
    assert wilson_interval(correct - 25, N)[1] > wilson_interval(correct, N)[0]
    text = format_check(result)
    assert text.startswith("regression check: FAIL") and "corruption gaussian_noise s3" in text
    assert "(11 cells + 1 aggregate tested: 2 REGRESSED, 10 ok)" in text  # cell + aggregate
    assert "deltas: 2 down (2 significantly beyond 0 pp), 0 up, 10 unchanged" in text
    # A 3-point tolerance accepts a 2.5-point drop; tolerance stays in percentage points.
    assert not check_against_baseline(as_results(outcomes, new), baseline, 3.0).failed


def test_reruns_with_other_noise_rarely_alarm(outcomes):
    """No true change: the gate's family-wise false-alarm rate is at most alpha (5 %), so 30
    reruns raise about 1.5 alarms (5 or more: P = 1.6 %)."""
    base = vectors()
    baseline = freeze_baseline(as_results(outcomes, base))
    alarms, discordant = 0, 0
    for seed in range(1, 31):
        result = check_against_baseline(as_results(outcomes, rerun(base, seed)), baseline,
                                        n_resamples=500)
        assert len(result.table) == 11 + 1  # 11 cells + the corruption aggregate
        discordant += int((result.table["delta"] != 0).sum())
        alarms += result.failed
    assert alarms <= 4 and discordant > 200  # and the reruns really moved the cells


def test_small_drops_everywhere_fail_through_the_aggregate(outcomes):
    base, flip = vectors(), outcomes[1]
    # Each corruption cell: 20 examples lost, 12 gained (-0.8 pp; one-sided McNemar p = 0.11).
    new = {k: (flip(flip(v, 20, seed=i), 12, seed=99 + i, to=True) if k != "clean" else v)
           for i, (k, v) in enumerate(base.items())}
    result = check_against_baseline(as_results(outcomes, new), freeze_baseline(
        as_results(outcomes, base)), n_resamples=4000)
    table = result.table.set_index("aggregate", drop=False)
    aggregate = table.loc["corruption mean (10 corruptions, severity 3)"]
    assert aggregate["status"] == "REGRESSED" and aggregate["method"] == "paired bootstrap"
    assert aggregate["delta"] == pytest.approx(-0.8)
    cells = result.table[result.table["scope"] == "cell"]
    assert (cells["status"] == "ok").all()  # no cell alone shows the drop
    assert "REGRESSED  m      corruption mean (10 corruptions, severity 3)" in format_check(result)


def test_unpaired_without_outcomes_and_says_so(outcomes):
    base = vectors()
    baseline = freeze_baseline(as_results(outcomes, base))
    bare = as_results(outcomes, {**base, "fog": outcomes[1](base["fog"], 120)})
    bare = ResultSet(bare.frame, source="csv only")
    result = check_against_baseline(bare, baseline)
    assert set(result.table["method"]) == {"unpaired (new has no per-example outcomes)"}
    fog = result.table[result.table["corruption"] == "fog"].iloc[0]
    assert fog["status"] == "REGRESSED" and fog["delta"] == pytest.approx(-12.0)
    assert "unpaired: 12 of 12 tests" in format_check(result)


def test_identity_changes_warn_and_fail_when_strict(outcomes):
    base = vectors()
    baseline = freeze_baseline(as_results(outcomes, base, checkpoint_sha256="a" * 64,
                                          arch="resnet56"))
    new = as_results(outcomes, base, checkpoint_sha256="b" * 64, arch="resnet20")
    result = check_against_baseline(new, baseline)
    assert not result.failed
    changes = {c["field"]: c for c in result.identity}
    assert set(changes) == {"checkpoint_sha256", "arch"} and changes["arch"]["cells"] == 11
    assert "warning: m: arch changed resnet56 -> resnet20 (11 cells)" in format_check(result)
    strict = check_against_baseline(new, baseline, strict=True)
    assert strict.failed and "FAILURE (--strict)" in format_check(strict)


def test_other_examples_are_compared_unpaired_with_a_warning(outcomes):
    base = vectors()
    baseline = freeze_baseline(as_results(outcomes, base))
    other = outcomes[0]([({"model": "m", "dataset": "cifar10", "benchmark": "clean"},
                          vectors(seed=5, n=300)["clean"])], fingerprint="clean-set-1")
    result = check_against_baseline(other, baseline)
    clean = result.table[result.table["benchmark"] == "clean"].iloc[0]
    assert clean["method"] == "unpaired (different examples (fingerprint))"
    assert {(c["field"], c["baseline"], c["new"]) for c in result.identity} == {
        ("n", "1000", "300"), ("fingerprint", "clean-set-0", "clean-set-1")}
    assert result.count("MISSING") == 10 and result.failed


def test_missing_failed_and_new_cells():
    def run(cells):
        rows = [make_row(correct=c, n=N, model="m", benchmark=b, attack="pgd" if b == "attack"
                         else None, eps=e) for (b, e), c in cells.items()]
        return ResultSet(normalize_frame(to_frame(rows)), source="t")

    baseline = freeze_baseline(run({("clean", None): 900, ("attack", 8 / 255): 450,
                                    ("attack", 2 / 255): 700}))
    assert all(c["outcomes"] is None for c in baseline["cells"])
    new = run({("clean", None): 900, ("attack", 4 / 255): 600, ("attack", 8 / 255): 450})
    frame = new.frame.astype({"status": object, "error": object})
    frame.loc[2, ["status", "error"]] = ["failed", "oom"]
    result = check_against_baseline(ResultSet(normalize_frame(frame), source="t"), baseline)
    statuses = {(r["benchmark"], 0 if math.isnan(r["eps"]) else round(255 * r["eps"])): r["status"]
                for _, r in result.table.iterrows()}
    assert statuses == {("clean", 0): "ok", ("attack", 8): "FAILED", ("attack", 2): "MISSING",
                        ("attack", 4): "new"}
    assert result.failed
    text = format_check(result)
    assert "MISSING" in text and "FAILED" in text and "eps=2/255" in text


def test_several_seeds_are_averaged_and_unpaired():
    rows = [make_row(correct=c, n=N, model="m", benchmark="corruption", corruption="fog",
                     severity=3, seed=s) for s, c in ((0, 700), (1, 720))]
    baseline = freeze_baseline(ResultSet(normalize_frame(to_frame(rows)), source="t"))
    assert baseline["cells"][0]["correct"] == 710 and baseline["cells"][0]["seeds"] == [0, 1]
    new = [make_row(correct=600, n=N, model="m", benchmark="corruption", corruption="fog",
                    severity=3, seed=4)]
    result = check_against_baseline(ResultSet(normalize_frame(to_frame(new)), source="t"),
                                    baseline)
    assert result.table["method"].iloc[0] == "unpaired (reference has several seeds)"
    assert result.failed


def test_baseline_round_trip_is_compact(tmp_path, outcomes):
    base = {k: np.resize(v, 10_000) for k, v in vectors().items()}
    baseline = freeze_baseline(as_results(outcomes, base))
    assert baseline["version"] == BASELINE_VERSION == 2
    cell = baseline["cells"][0]
    assert len(cell["outcomes"]["bits"]) < 2000 and "index" not in cell["outcomes"]
    assert {"correct", "n", "checkpoint_sha256", "arch", "norm", "mean", "std", "fingerprint",
            "seeds"} <= set(cell)
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    assert path.stat().st_size < 11 * 3000
    again = check_against_baseline(as_results(outcomes, base), read_baseline(path))
    assert not again.failed and set(again.table["delta"]) == {0.0}


@pytest.mark.parametrize("edit, message", [
    (lambda b: b.update(version=1), "version 1 predates per-example outcomes.*re-freeze"),
    (lambda b: b.update(version=7), "version 7 is unsupported"),
    (lambda b: b.update(cells=[]), "field 'cells' is empty"),
    (lambda b: b.update(cells={}), "field 'cells' must be a list"),
    (lambda b: b["cells"][2].update(correct=math.nan), r"cells\[2\].correct is nan"),
    (lambda b: b["cells"][1].pop("n"), r"cells\[1\].n must be a number, got None"),
    (lambda b: b["cells"][0].update(benchmark=None), r"cells\[0\].benchmark must be a string"),
    (lambda b: b["cells"][0].update(correct=2000), r"cells\[0\]: correct=2000, n=1000"),
    (lambda b: b["cells"][0].update(accuracy=0.5), r"cells\[0\].accuracy 0.5 disagrees"),
    (lambda b: b["cells"][0]["outcomes"].update(bits="AAAA"), r"cells\[0\].outcomes: field 'bits'"),
    (lambda b: b["cells"][3].update(correct=b["cells"][3]["correct"] - 1,
                                    accuracy=(b["cells"][3]["correct"] - 1) / N),
     r"cells\[3\].outcomes hold"),
    (lambda b: b["cells"].append(dict(b["cells"][0])), r"cells\[11\] repeats the key"),
    (lambda b: b["cells"].insert(0, "clean"), r"cells\[0\] must be an object"),
])
def test_unusable_baselines_are_refused(tmp_path, outcomes, edit, message):
    baseline = freeze_baseline(as_results(outcomes, vectors()))
    edit(baseline)
    path = tmp_path / "b.json"
    path.write_text(json.dumps(baseline))  # NaN is written as NaN, as a careless writer would
    with pytest.raises(ValueError, match=message) as error:
        read_baseline(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_bad_files_and_arguments(tmp_path, outcomes):
    path = tmp_path / "b.json"
    path.write_text("[]")
    with pytest.raises(ValueError, match="not a robust-eval baseline"):
        read_baseline(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_baseline(path)
    with pytest.raises(FileNotFoundError):
        read_baseline(tmp_path / "none.json")
    good = freeze_baseline(as_results(outcomes, vectors()))
    with pytest.raises(ValueError, match="re-freeze"):
        validate_baseline({**good, "key_columns": ["model"]})
    with pytest.raises(ValueError, match="no successful cells"):
        freeze_baseline(ResultSet(normalize_frame(to_frame(
            [make_row(correct=0, n=0, model="m", benchmark="spectral")])), source="s"))
    results = as_results(outcomes, vectors())
    with pytest.raises(ValueError, match="tolerance"):
        check_against_baseline(results, good, tolerance_pp=-1)
    with pytest.raises(ValueError, match="alpha"):
        check_against_baseline(results, good, alpha=0)
