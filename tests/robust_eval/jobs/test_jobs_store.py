"""The result store: atomic records, corrupt files detected, many writers at once, tables."""
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from robust_eval.jobs.store import CorruptCellError, ResultStore, results_frame
from robust_eval.jobs.tables import corruption_table, eps_table, noise_table
from robust_eval.schema import make_row

REPO = Path(__file__).resolve().parents[3]


def row(**fields):
    base = dict(model="m", dataset="d", benchmark="clean", code_version="v")
    base.update(fields)
    correct, n = base.pop("correct", 5), base.pop("n", 10)
    return make_row(correct=correct, n=n, **base)


def test_write_read_and_status(tmp_path):
    store = ResultStore(tmp_path)
    assert store.status("k1") == "pending"
    store.write("k1", status="ok", rows=[row()])
    record = store.read("k1")
    assert record["status"] == "ok" and record["rows"][0]["cell_key"] == "k1"
    assert store.status("k1") == "ok"
    assert not [p for p in (tmp_path / "cells").iterdir() if p.name.startswith(".")]
    with pytest.raises(ValueError, match="status"):
        store.write("k2", status="done", rows=[row()])


@pytest.mark.parametrize("content, words", [
    ('{"format": 1, "key": "k", "status": "ok", "ro', "not valid JSON"),
    ('{"format": 1, "key": "other", "status": "ok", "rows": []}', "holds key 'other'"),
    ('{"format": 1, "key": "k", "status": "ok", "rows": []}', "no rows"),
    ('{"format": 1, "key": "k", "status": "ok", "rows": [{"model": "m"}]}', "lacks column"),
    ("\xff\xfe", "cannot be read"),
])
def test_corrupt_cell_files_are_detected_and_quarantined(tmp_path, content, words):
    store = ResultStore(tmp_path)
    path = store.cell_path("k")
    path.parent.mkdir(parents=True)
    if content == "\xff\xfe":
        path.write_bytes(b"\xff\xfe\x00")
    else:
        path.write_text(content)
    assert store.status("k") == "corrupt"
    with pytest.raises(CorruptCellError, match=words):
        store.read("k")
    assert store.rows(["k"]) == []  # never half a record in the table
    moved = store.quarantine("k")
    assert moved.is_file() and moved.parent.name == "corrupt"
    assert store.status("k") == "pending"


def test_failed_rows_keep_nan_accuracy_in_csv_and_parquet(tmp_path):
    store = ResultStore(tmp_path)
    store.write("a", status="ok", rows=[row(correct=7, n=10)])
    failed = {c: None for c in row()}
    failed.update(model="m", benchmark="clean", accuracy=math.nan, n=math.nan,
                  correct=math.nan, ci_low=math.nan, ci_high=math.nan, status="failed",
                  error="FileNotFoundError: checkpoint not found: x")
    store.write("b", status="failed", rows=[failed], error=failed["error"])
    frame = store.write_tables(["a", "b", "a"])  # a key listed twice still gives one row
    assert len(frame) == 2
    for table in (pd.read_csv(tmp_path / "results.csv"),
                  pd.read_parquet(tmp_path / "results.parquet")):
        ok, bad = table.iloc[0], table.iloc[1]
        assert ok["accuracy"] == pytest.approx(0.7) and ok["status"] == "ok"
        assert ok["ci_low"] < 0.7 < ok["ci_high"]
        assert bad["status"] == "failed" and math.isnan(bad["accuracy"])
        assert "checkpoint not found" in bad["error"]


WRITER = textwrap.dedent("""
    import random, sys, time
    sys.path.insert(0, {repo!r})
    from robust_eval.jobs.store import ResultStore
    from robust_eval.schema import make_row
    root, writer = sys.argv[1], int(sys.argv[2])
    store = ResultStore(root)
    rng = random.Random(writer)
    for i in range(25):
        key = f"k{{rng.randrange(20)}}"
        rows = [make_row(correct=writer, n=10, model=f"w{{writer}}", benchmark="clean",
                         code_version="v", created_at="t", corruption="x" * 2000)
                for _ in range(3)]
        store.write(key, status="ok", rows=rows)
        store.rows([f"k{{j}}" for j in range(20)])  # readers never see half a file
        if i % 5 == 0 or i == 24:  # the last rebuild comes after this writer's last cell
            store.write_tables([f"k{{j}}" for j in range(20)])
""")


@pytest.mark.slow
def test_many_processes_writing_at_once_never_corrupt_the_store(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(repo=str(REPO)))
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "store"), str(w)],
                              stderr=subprocess.PIPE, text=True) for w in range(3)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    store = ResultStore(tmp_path / "store")
    keys = store.keys()
    assert keys and all(store.status(k) == "ok" for k in keys)
    for key in keys:  # each record is whole and from a single writer
        rows = store.read(key)["rows"]
        assert len(rows) == 3 and len({r["model"] for r in rows}) == 1
    leftovers = [p.name for p in (tmp_path / "store" / "cells").iterdir() if p.is_file()
                 and not p.name.endswith(".json")]
    assert leftovers == []
    table = pd.read_csv(tmp_path / "store" / "results.csv")
    assert len(table) == 3 * len(keys)


def test_pivots_over_the_long_frame():
    rows = [row(benchmark="corruption", corruption=c, severity=s, correct=10 - s, n=10)
            for c in ("fog", "gaussian_noise") for s in (1, 2)]
    rows += [row(benchmark="attack", attack="pgd", threat="linf", steps=10, eps=e,
                 correct=c, n=10) for e, c in ((0.0, 9), (8 / 255, 2))]
    rows += [row(benchmark="label_noise", noise_type="symmetric", noise_rate=r, seed=s,
                 correct=c, n=10) for r, s, c in ((0.2, 0, 8), (0.2, 1, 6), (0.4, 0, 5))]
    failed = row(benchmark="attack", attack="fgsm", threat="linf", steps=1, eps=0.1)
    failed.update(accuracy=math.nan, status="failed")
    frame = results_frame(rows + [failed])
    table = corruption_table(frame)
    # benchmark order (gaussian_noise before fog), severities as columns, a mean column
    assert list(table.index.get_level_values("corruption")) == ["gaussian_noise", "fog"]
    assert table.loc[("m", "d", "fog"), 2] == pytest.approx(0.8)
    assert table.loc[("m", "d", "fog"), "mean"] == pytest.approx(0.85)
    eps = eps_table(frame)
    assert eps.loc[("pgd", "linf", 10, 8 / 255), ("m", "d")] == pytest.approx(0.2)
    assert math.isnan(eps.loc[("fgsm", "linf", 1, 0.1), ("m", "d")])  # failed stays NaN
    assert len(eps) == 3  # only observed combinations
    noise = noise_table(frame)
    assert noise.loc[("symmetric", 0.2), ("m", "d")] == pytest.approx(0.7)  # mean of seeds
