"""A realistic result frame: two models, every benchmark, one failed cell, built with make_row."""
import json

import numpy as np
import pytest

from robust_eval.schema import make_row, to_frame

MODELS = {"resnet18_bn": ("bn", "a" * 64, 0.0), "resnet18_convnorm": ("convnorm", "b" * 64, 0.03)}
CORRUPTIONS = ("gaussian_noise", "defocus_blur", "fog")
N = 2000


def _rows(rng):
    rows = []
    for model, (norm, sha, boost) in MODELS.items():
        base = dict(model=model, checkpoint_sha256=sha, arch="resnet18", norm=norm,
                    dataset="cifar10", device="cpu (x86_64)", seed=0)

        def cell(p, **fields):
            correct = int(rng.binomial(N, min(max(p, 0.0), 1.0)))
            return make_row(correct=correct, n=N, **base, **fields)

        rows.append(cell(0.93 + boost / 3, benchmark="clean"))
        for c_index, corruption in enumerate(CORRUPTIONS):
            for severity in range(1, 6):
                p = 0.92 - 0.07 * severity * (1 + 0.3 * c_index) + boost
                rows.append(cell(p, benchmark="corruption", corruption=corruption,
                                 severity=severity))
        for attack, steps in (("fgsm", 1), ("pgd", 10)):
            for eps in (0.0, 2 / 255, 4 / 255, 8 / 255):
                p = 0.85 - (0.045 if attack == "fgsm" else 0.055) * eps * 255 + boost
                rows.append(cell(p, benchmark="attack", attack=attack, threat="linf", eps=eps,
                                 steps=steps, restarts=1))
        for noise_type in ("symmetric", "asymmetric"):
            for rate in (0.2, 0.4):
                for metric, drop in (("best_val_epoch", 0.0), ("last_epoch", 0.08)):
                    p = 0.9 - rate * (0.5 if noise_type == "symmetric" else 0.3) - drop * rate \
                        + 2 * boost
                    rows.append(cell(p, benchmark="label_noise", noise_type=noise_type,
                                     noise_rate=rate, metric=metric))
        for index, layer in enumerate(["conv1", "layer1.0.conv1", "layer1.0.conv2",
                                       "layer2.0.conv1", "layer2.0.shortcut.0"]):
            value = (2.5 + index) if norm == "bn" else (1.2 + 0.1 * index)
            for metric, scale in (("spectral_norm", 1.0), ("spectral_norm_with_norm", 1.7)):
                rows.append(make_row(correct=0, n=0, **base, benchmark="spectral", metric=metric,
                                     params=json.dumps({"layer": layer, "layer_index": index,
                                                        "value": value * scale})))
    failed = make_row(correct=0, n=0, **{**base, "model": "resnet18_convnorm"},
                      benchmark="attack", attack="autoattack", threat="linf", eps=8 / 255,
                      status="failed", error="RuntimeError: CUDA out of memory")
    failed["accuracy"] = float("nan")
    rows.append(failed)
    return rows


@pytest.fixture(scope="session")
def full_frame():
    return to_frame(_rows(np.random.default_rng(0)))


@pytest.fixture
def results_dir(tmp_path, full_frame):
    """A results directory as `robust-eval run` writes it: results.csv + run.json."""
    out = tmp_path / "results"
    out.mkdir()
    full_frame.to_csv(out / "results.csv", index=False)
    run = {"config": {"name": "cifar10-small", "benchmarks": ["clean", "corruption", "attack"],
                      "limit": N},
           "models": [{"name": m, "checkpoint_sha256": sha, "norm": norm, "arch": "resnet18"}
                      for m, (norm, sha, _) in MODELS.items()],
           "environment": {"torch": "2.14.1", "cuda": None, "device": "cpu (x86_64)",
                           "code_version": "0.1.0+abc1234", "date": "2026-11-27T12:00:00+00:00"}}
    (out / "run.json").write_text(json.dumps(run))
    return out


def outcome_results(cells, fingerprint="clean-set-0", source="test"):
    """A ResultSet with per-example outcomes: cells = [(row fields, 0/1 vector)], one row each,
    as `robust-eval run` would store them (cell_key, fingerprint, outcomes frame)."""
    import pandas as pd

    from reports.results import ResultSet, normalize_frame

    rows, parts = [], []
    for i, (fields, correct) in enumerate(cells):
        correct = np.asarray(correct, dtype=bool)
        key = f"{source}-{i}"
        rows.append(make_row(correct=int(correct.sum()), n=len(correct), cell_key=key,
                             fingerprint=fingerprint, **fields))
        parts.append(pd.DataFrame({"cell_key": key, "metric": fields.get("metric") or "",
                                   "index": np.arange(len(correct)), "correct": correct}))
    return ResultSet(normalize_frame(to_frame(rows)), source=source,
                     outcomes=pd.concat(parts, ignore_index=True))


def flip(correct, k, seed=0, to=False):
    """A copy of a 0/1 vector with k examples that were right (to=False) turned wrong."""
    out = np.asarray(correct, dtype=bool).copy()
    candidates = np.flatnonzero(out != to)
    out[np.random.default_rng(seed).choice(candidates, size=k, replace=False)] = to
    return out


@pytest.fixture
def outcomes():
    """The helpers above, for test modules (importlib mode cannot import conftest)."""
    return outcome_results, flip
