"""Model comparisons: paired per cell and per aggregate, unpaired fallback, records, text."""
import json

import numpy as np
import pandas as pd
import pytest

from reports.compare import (RECORD_COLUMNS, aggregate_groups, compare_models, describe,
                             folder_names, format_comparison, merge_results)
from reports.results import ResultSet, normalize_frame

N = 800


def model_cells(name, vecs):
    cells = [({"model": name, "dataset": "cifar10", "benchmark": "clean"}, vecs["clean"])]
    for corruption in ("fog", "snow"):
        for severity in (1, 3):
            cells.append(({"model": name, "dataset": "cifar10", "benchmark": "corruption",
                           "corruption": corruption, "severity": severity},
                          vecs[(corruption, severity)]))
    for eps in (2 / 255, 8 / 255):
        cells.append(({"model": name, "dataset": "cifar10", "benchmark": "attack",
                       "attack": "pgd", "threat": "linf", "eps": eps, "steps": 10,
                       "restarts": 1}, vecs[("pgd", eps)]))
    return cells


@pytest.fixture
def pair(outcomes):
    make, flip = outcomes
    rng = np.random.default_rng(0)
    base = {"clean": rng.random(N) < 0.92}
    for key, p in ((("fog", 1), 0.85), (("fog", 3), 0.7), (("snow", 1), 0.8),
                   (("snow", 3), 0.6), (("pgd", 2 / 255), 0.5), (("pgd", 8 / 255), 0.2)):
        base[key] = rng.random(N) < p
    worse = dict(base)
    worse[("fog", 3)] = flip(base[("fog", 3)], 60)  # -7.5 points on one cell
    worse[("snow", 3)] = flip(flip(base[("snow", 3)], 10, seed=1), 10, seed=2, to=True)
    return make(model_cells("ref", base) + model_cells("cand", worse)), make


def test_paired_cells_and_aggregates(pair):
    results, _ = pair
    table = compare_models(results, "ref")
    assert list(table.columns) == RECORD_COLUMNS
    assert set(table["model"]) == {"cand"} and set(table["reference"]) == {"ref"}
    cells = table[table["scope"] == "cell"]
    assert len(cells) == 7 and set(cells["method"]) == {"paired McNemar"}
    fog3 = cells[(cells["corruption"] == "fog") & (cells["severity"] == 3)].iloc[0]
    assert fog3["delta"] == pytest.approx(-7.5) and fog3["ci_high"] < 0
    assert fog3["verdict"] == "worse" and fog3["significant"]
    assert fog3["p_adjusted"] >= fog3["p_value"]
    same = cells[cells["benchmark"] == "clean"].iloc[0]
    assert same["delta"] == 0 and same["p_value"] == 1 and same["verdict"] == \
        "no significant difference"
    aggregates = table[table["scope"] == "aggregate"].set_index("aggregate")
    assert list(aggregates.index) == [
        "corruption mean (2 corruptions, 2 severities)",
        "corruption mean, severity 1 (2 corruptions)",
        "corruption mean, severity 3 (2 corruptions)",
        "pgd linf mean over eps 2/255, 8/255"]
    assert set(aggregates["method"]) == {"paired bootstrap"}
    overall = aggregates.loc["corruption mean (2 corruptions, 2 severities)"]
    assert overall["delta"] == pytest.approx(-7.5 / 4) and overall["cells"] == 4
    assert overall["verdict"] == "worse" and overall["n"] == N
    assert aggregates.loc["corruption mean, severity 1 (2 corruptions)", "delta"] == 0
    # JSON-ready: the CLI writes these records as they are.
    json.dumps(table.astype(object).where(table.notna(), None).to_dict("records"),
               allow_nan=False)


def test_text_is_worst_first_with_eps_as_fractions(pair):
    results, _ = pair
    text = format_comparison(compare_models(results, "ref"))
    lines = text.splitlines()
    assert lines[0].startswith("cand vs ref: 7 cells + 4 aggregates; 3 significantly worse")
    body = [line for line in lines if line.startswith(("worse", "no significant"))]
    assert body[0].startswith("worse") and "corruption fog s3" in body[0]
    assert "-7.50 [" in body[0]
    assert any("attack pgd linf eps=8/255 10 steps" in line for line in body)
    assert "unpaired" not in text


def test_unpaired_without_a_shared_fingerprint(pair):
    results, make = pair
    frame = results.frame.copy()
    frame.loc[frame["model"] == "cand", "fingerprint"] = "other-examples"
    table = compare_models(ResultSet(frame, source="x", outcomes=results.outcomes), "ref")
    assert set(table["method"]) == {"unpaired (different examples (fingerprint))"}
    fog3 = table[(table["corruption"] == "fog") & (table["severity"] == 3)].iloc[0]
    assert fog3["delta"] == pytest.approx(-7.5) and fog3["verdict"] == "worse"
    assert "unpaired: 11 of 11 tests" in format_comparison(table)


def test_bad_reference_and_single_model(pair):
    results, make = pair
    with pytest.raises(ValueError, match="reference model 'nope' is not in test "
                                         r"\(models: ref, cand\)"):
        compare_models(results, "nope")
    alone = make(model_cells("ref", {k: np.ones(5, bool) for k in
                                     ["clean", ("fog", 1), ("fog", 3), ("snow", 1), ("snow", 3),
                                      ("pgd", 2 / 255), ("pgd", 8 / 255)]}))
    with pytest.raises(ValueError, match="no model besides 'ref'"):
        compare_models(alone, "ref")


def test_merged_folders_name_shared_models_by_folder(pair):
    results, _ = pair
    ref = ResultSet(results.frame[results.frame["model"] == "ref"], source="a",
                    outcomes=results.outcomes)
    cand = results.frame[results.frame["model"] == "cand"].assign(model="ref")
    merged = merge_results([ref, ResultSet(cand, source="b", outcomes=results.outcomes)],
                           folder_names(["runs/old", "runs/new"]))
    assert sorted(set(merged.frame["model"])) == ["new/ref", "old/ref"]
    table = compare_models(merged, "old/ref")
    assert (table["verdict"] == "worse").sum() == 3
    assert folder_names(["a/run", "b/run"]) == ["a/run", "b/run"]


def test_aggregate_groups_and_describe():
    slot = lambda **f: tuple(str(f.get(c, "")) for c in (  # noqa: E731
        "dataset", "benchmark", "corruption", "severity", "attack", "threat", "eps", "steps",
        "restarts", "noise_type", "noise_rate", "metric"))
    slots = [slot(dataset="d", benchmark="corruption", corruption="fog", severity=3),
             slot(dataset="d", benchmark="attack", attack="fgsm", threat="linf", eps="0"),
             slot(dataset="d", benchmark="attack", attack="fgsm", threat="linf",
                  eps="0.0313725490")]
    assert aggregate_groups(slots) == []  # one corruption cell; one eps > 0
    noise = {"benchmark": "label_noise", "noise_type": "symmetric", "noise_rate": 0.4,
             "metric": "last_epoch", "eps": np.nan}
    assert describe(noise) == "label_noise symmetric 40% last_epoch"
    assert describe({}, label="corruption mean") == "corruption mean"
    assert describe(pd.Series({"benchmark": "clean", "corruption": None}).to_dict()) == "clean"


def test_bf16_rows_are_another_model_paired_with_fp32(outcomes):
    """`evaluate --precision bf16` into a folder that holds the fp32 rows: the report, the gate
    and compare must never pool the two precisions; compare pairs them example by example."""
    make, flip = outcomes
    fp32 = np.random.default_rng(1).random(N) < 0.9
    bf16 = flip(fp32, 12)
    row = {"model": "resnet20", "dataset": "cifar10", "benchmark": "clean"}
    results = make([({**row, "precision": "fp32"}, fp32), ({**row, "precision": "bf16"}, bf16)])
    assert sorted(results.frame["model"]) == ["resnet20", "resnet20 (bf16)"]
    again = normalize_frame(results.frame)  # a frame read back and passed on again
    assert sorted(again["model"]) == ["resnet20", "resnet20 (bf16)"]
    table = compare_models(results, "resnet20")
    cell = table[table["scope"] == "cell"].iloc[0]
    assert cell["model"] == "resnet20 (bf16)" and cell["method"] == "paired McNemar"
    assert cell["delta"] == pytest.approx(-100 * 12 / N)
