"""Per-example outcomes behind an accuracy: which examples a model got right.

A cell's outcomes are its examples' dataset indices, true labels and predictions (attacks: also
the clean prediction). Stored compactly as JSON text (zlib-compressed int16 arrays in base64;
10,000 examples take a few KB), so two runs on the same examples can be compared pairwise.
"""
from __future__ import annotations

import base64
import zlib
from typing import Any, Dict, Optional

import numpy as np
import pandas as pd

FIELDS = ("label", "pred", "clean_pred")
OUTCOME_COLUMNS = ["cell_key", "metric", "index", "label", "pred", "clean_pred", "correct"]


def _pack(values: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.asarray(values, "<i2").tobytes(), 9)).decode()


def _unpack(text: str, n: int, what: str) -> np.ndarray:
    try:
        values = np.frombuffer(zlib.decompress(base64.b64decode(text)), "<i2")
    except (ValueError, zlib.error) as error:
        raise ValueError(f"outcomes: {what} is not packed int16 data ({error})") from None
    if len(values) != n:
        raise ValueError(f"outcomes: {what} holds {len(values)} values, expected {n}")
    return values.astype(np.int64)


def encode(label: Any, pred: Any, index: Any = None, clean_pred: Any = None) -> Dict[str, Any]:
    """Arrays (or tensors) -> a JSON-ready record. index None means 0..n-1."""
    label, pred = np.asarray(label), np.asarray(pred)
    n = len(label)
    if len(pred) != n:
        raise ValueError(f"outcomes: {n} labels but {len(pred)} predictions")
    record: Dict[str, Any] = {"n": int(n), "label": _pack(label), "pred": _pack(pred)}
    if index is not None and not np.array_equal(np.asarray(index), np.arange(n)):
        record["index"] = base64.b64encode(zlib.compress(
            np.asarray(index, "<i8").tobytes(), 9)).decode()
    if clean_pred is not None:
        record["clean_pred"] = _pack(np.asarray(clean_pred))
    return record


def decode(record: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """A record -> {index, label, pred, [clean_pred], correct} arrays; ValueError if malformed."""
    if not isinstance(record, dict) or not isinstance(record.get("n"), int):
        raise ValueError("outcomes: expected an object with an integer n")
    n = record["n"]
    out = {"label": _unpack(record.get("label", ""), n, "label"),
           "pred": _unpack(record.get("pred", ""), n, "pred")}
    if "index" in record:
        try:
            out["index"] = np.frombuffer(zlib.decompress(base64.b64decode(record["index"])),
                                         "<i8").astype(np.int64)
        except (ValueError, zlib.error) as error:
            raise ValueError(f"outcomes: index is not packed int64 data ({error})") from None
        if len(out["index"]) != n:
            raise ValueError(f"outcomes: index holds {len(out['index'])} values, expected {n}")
    else:
        out["index"] = np.arange(n, dtype=np.int64)
    if "clean_pred" in record:
        out["clean_pred"] = _unpack(record["clean_pred"], n, "clean_pred")
    out["correct"] = out["label"] == out["pred"]
    return out


def outcomes_frame(records: Dict[str, Any]) -> pd.DataFrame:
    """{(cell_key, metric): record} -> one long frame, one row per example."""
    parts = []
    for (cell_key, metric), record in records.items():
        arrays = decode(record)
        part = pd.DataFrame({"index": arrays["index"], "label": arrays["label"],
                             "pred": arrays["pred"], "correct": arrays["correct"]})
        part["clean_pred"] = arrays.get("clean_pred", np.full(len(part), -1))
        part.insert(0, "metric", metric or "")
        part.insert(0, "cell_key", cell_key)
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=OUTCOME_COLUMNS)
    return pd.concat(parts, ignore_index=True)[OUTCOME_COLUMNS]


def correct_vector(record: Optional[Dict[str, Any]]) -> Optional[pd.Series]:
    """Correctness indexed by example index (None when there are no outcomes)."""
    if not record:
        return None
    arrays = decode(record)
    return pd.Series(arrays["correct"], index=arrays["index"])


def pack_correct(correct: pd.Series) -> Dict[str, Any]:
    """Correctness indexed by example index -> {n, bits, [index]}: packed bits in base64
    (10,000 examples take 1.7 KB), the index zlib-packed unless it is 0..n-1."""
    bits = np.asarray(correct, dtype=bool)
    record: Dict[str, Any] = {"n": int(len(bits)),
                              "bits": base64.b64encode(np.packbits(bits).tobytes()).decode()}
    index = np.asarray(correct.index, dtype=np.int64)
    if not np.array_equal(index, np.arange(len(bits))):
        record["index"] = base64.b64encode(zlib.compress(index.astype("<i8").tobytes(),
                                                         9)).decode()
    return record


def unpack_correct(record: Any) -> pd.Series:
    """The inverse of pack_correct; ValueError naming the bad field."""
    if not isinstance(record, dict):
        raise ValueError("expected an object {n, bits, [index]}")
    n = record.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise ValueError(f"field 'n' must be a positive integer, got {n!r}")
    try:
        packed = np.frombuffer(base64.b64decode(record.get("bits"), validate=True), np.uint8)
    except (TypeError, ValueError) as error:
        raise ValueError(f"field 'bits' is not base64 ({error})") from None
    if len(packed) != (n + 7) // 8:
        raise ValueError(f"field 'bits' holds {len(packed)} bytes, {n} examples need "
                         f"{(n + 7) // 8}")
    bits = np.unpackbits(packed)[:n].astype(bool)
    index = np.arange(n, dtype=np.int64)
    if "index" in record:
        try:
            index = np.frombuffer(zlib.decompress(base64.b64decode(record["index"],
                                                                   validate=True)), "<i8")
        except (TypeError, ValueError, zlib.error) as error:
            raise ValueError(f"field 'index' is not packed int64 data ({error})") from None
        if len(index) != n:
            raise ValueError(f"field 'index' holds {len(index)} values, expected {n}")
    return pd.Series(bits, index=index.astype(np.int64))
