"""Reading results directories robustly."""
import gzip
import re
import warnings

import pandas as pd
import pytest

from reports.results import load_results, normalize_frame
from reports.stats import wilson_interval


def test_load_directory_with_run_json(results_dir):
    results = load_results(results_dir)
    assert results.source.endswith("results.csv")
    assert results.run["environment"]["torch"] == "2.14.1"
    assert results.notes == []
    assert len(results.failed) == 1
    assert results.failed["attack"].iloc[0] == "autoattack"
    assert (results.ok["status"] == "ok").all()


def test_missing_or_broken_run_json_is_a_note(results_dir):
    (results_dir / "run.json").unlink()
    assert "run.json absent" in load_results(results_dir).notes[0]
    (results_dir / "run.json").write_text("{not json")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        results = load_results(results_dir)
    assert results.run == {} and "unreadable" in results.notes[0]


def test_csv_and_parquet_must_agree(results_dir, full_frame):
    pytest.importorskip("pyarrow")
    frame = full_frame.copy()
    frame["params"] = frame["params"].astype(str)
    frame.to_parquet(results_dir / "results.parquet")
    results = load_results(results_dir)  # the same rows in both: the typed Parquet is read
    assert results.source.endswith("results.parquet") and len(results.frame) == len(frame)
    stale = frame.copy()
    stale.loc[stale["benchmark"] == "clean", "correct"] -= 1  # an older, different run
    stale.loc[stale["benchmark"] == "clean", "accuracy"] = (stale["correct"] / stale["n"])
    stale.to_parquet(results_dir / "results.parquet")
    with pytest.raises(ValueError, match=r"results.csv and .*results.parquet disagree: "
                                         r"results.csv holds \(.*benchmark=clean"):
        load_results(results_dir)
    frame.iloc[:-3].to_parquet(results_dir / "results.parquet")
    with pytest.raises(ValueError, match=r"results.csv \(\d+ rows\) and .*results.parquet "
                                         r"\(\d+ rows\) disagree"):
        load_results(results_dir)


def test_accuracy_and_intervals_come_from_the_counts(results_dir, full_frame):
    frame = full_frame.copy()
    frame["ci_low"], frame["ci_high"] = 0.0, 1.0  # stored intervals are never read back
    frame.to_csv(results_dir / "results.csv", index=False)
    ok = load_results(results_dir).ok
    counted = ok[ok["n"] > 0]
    assert (counted["ci_high"] < 1.0).all()
    row = counted.iloc[3]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        wilson_interval(row["correct"], row["n"]))
    frame.loc[7, "correct"] = None
    frame.to_csv(results_dir / "results.csv", index=False)
    with pytest.raises(ValueError, match=r"results.csv: row 7 .* has n=2000 but correct=nan"):
        load_results(results_dir)
    frame.loc[7, "correct"] = full_frame.loc[7, "correct"]
    frame.loc[5, "accuracy"] -= 0.20  # accuracy cut by 20 points, counts untouched
    frame.to_csv(results_dir / "results.csv", index=False)
    with pytest.raises(ValueError, match=r"results.csv: row 5 \(model=resnet18_bn "
                                         r"benchmark=corruption .*\) stores accuracy .* but "
                                         r"correct/n = "):
        load_results(results_dir)


def test_outcomes_are_loaded_and_checked(tmp_path, outcomes):
    pytest.importorskip("pyarrow")
    from robust_eval.schema import to_frame

    made = outcomes[0]([({"model": "m", "benchmark": "clean"}, [1, 0, 1, 1]),
                        ({"model": "m", "benchmark": "corruption", "corruption": "fog",
                          "severity": 1}, [0, 0, 1, 1])])
    to_frame(made.frame).to_csv(tmp_path / "results.csv", index=False)
    made.outcomes.to_parquet(tmp_path / "outcomes.parquet")
    results = load_results(tmp_path)
    clean = results.correctness("test-0")
    assert clean.tolist() == [True, False, True, True] and clean.index.tolist() == [0, 1, 2, 3]
    assert results.correctness("test-1", None).sum() == 2
    assert results.correctness("other") is None
    broken = made.outcomes.copy()
    broken.loc[0, "correct"] = False  # 2/4 right, the row says 3/4
    broken.to_parquet(tmp_path / "outcomes.parquet")
    with pytest.raises(ValueError, match=r"outcomes.parquet: cell test-0 has outcomes for 4 "
                                         r"examples \(4 distinct\), 2 right, but results.csv "
                                         r"says 3/4"):
        load_results(tmp_path)
    orphan = made.outcomes.assign(cell_key=["gone"] * 4 + ["test-1"] * 4)
    orphan.to_parquet(tmp_path / "outcomes.parquet")
    results = load_results(tmp_path)
    assert results.correctness("test-0") is None and "1 cell(s) absent" in results.notes[-1]


def test_single_file_and_errors(results_dir, tmp_path):
    assert len(load_results(results_dir / "results.csv").frame) > 0
    with pytest.raises(FileNotFoundError, match="no results.csv"):
        load_results(tmp_path)
    with pytest.raises(FileNotFoundError, match="results not found"):
        load_results(tmp_path / "missing")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"a": [1], "b": [2]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"bad.csv is not a robust-eval result table.*'model'"):
        load_results(bad)


@pytest.mark.parametrize("content, why", [
    (bytes(range(128, 256)) * 8, r"is not a CSV file: byte 0 is not UTF-8 text"),
    (gzip.compress(b"model,benchmark\nm,clean\n"), r"is not a CSV file: byte 1 is not UTF-8"),
    (b"", r"is not a CSV file: it is empty"),
    (b'model,benchmark\n"m,clean\n', r"is not a readable CSV file \(Error tokenizing data"),
    (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", r"is not a robust-eval result table: it lacks "
                                          r"column\(s\) \['model', 'benchmark'\]"),
])
def test_garbage_results_file_is_named_with_what_is_wrong(tmp_path, content, why):
    for name in ("results.csv", "results.parquet"):
        if name.endswith("parquet") and not content:
            continue
        folder = tmp_path / name.replace(".", "_")
        folder.mkdir()
        (folder / name).write_bytes(content)
        expected = why if name.endswith("csv") else r"is not a readable parquet file \("
        with pytest.raises(ValueError, match=rf"^{re.escape(str(folder / name))} {expected}"):
            load_results(folder)


def test_normalize_fills_accuracy_and_status():
    frame = normalize_frame(pd.DataFrame({
        "model": ["m", "m", "m"], "benchmark": ["clean", "clean", "attack"],
        "correct": [3, None, None], "n": ["4", None, None], "error": [None, None, "oom"]}))
    assert frame["accuracy"].iloc[0] == 0.75
    assert list(frame["status"]) == ["ok", "ok", "failed"]
