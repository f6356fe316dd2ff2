"""Reading results directories robustly."""
import gzip
import re
import warnings

import pandas as pd
import pytest

from reports.results import load_results, normalize_frame


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


def test_parquet_is_preferred(results_dir, full_frame):
    pytest.importorskip("pyarrow")
    frame = full_frame.copy()
    frame["model"] = frame["model"] + "_pq"
    frame["params"] = frame["params"].astype(str)
    frame.to_parquet(results_dir / "results.parquet")
    results = load_results(results_dir)
    assert results.source.endswith("results.parquet")
    assert results.frame["model"].str.endswith("_pq").all()


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
