"""`robust-eval report | baseline | check` on results of a real (tiny) model.

A small CNN is trained on scikit-learn digits once per session (a few seconds, 1 thread), then
evaluated clean and under two noise perturbations whose noise depends on the seed.
"""
import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from robust_eval.cli import main
from robust_eval.evaluate.spectral import evaluate_spectral
from robust_eval.schema import make_row, to_frame

pytestmark = pytest.mark.slow  # the session fixture trains for a few seconds

PERTURBATIONS = (("gaussian_noise", 1, "gauss", 0.25), ("gaussian_noise", 2, "gauss", 0.45),
                 ("impulse_noise", 1, "impulse", 0.10))


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.head(x.mean((2, 3)))


@pytest.fixture(scope="session")
def digits_model():
    from sklearn.datasets import load_digits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        digits = load_digits()
        x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        y = torch.tensor(digits.target)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
        train, test = order[:1200], order[1200:]
        torch.manual_seed(0)
        model = DigitsCNN()
        optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
        for _ in range(20):
            for batch in train.split(200):
                optimiser.zero_grad()
                nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                optimiser.step()
        model.eval()
    finally:
        torch.set_num_threads(threads)
    return model, x[test], y[test]


def evaluate(model, images, labels, seed, name="digits_cnn", sha="0" * 64):
    """Schema rows: clean + seeded noise perturbations (the seed only changes the noise)."""
    base = dict(model=name, checkpoint_sha256=sha, arch="digits_cnn", norm="bn",
                dataset="digits", seed=seed, device="cpu")
    rows = []
    with torch.no_grad():
        correct = int((model(images).argmax(1) == labels).sum())
        rows.append(make_row(correct=correct, n=len(labels), benchmark="clean", **base))
        generator = torch.Generator().manual_seed(seed)
        for corruption, severity, kind, level in PERTURBATIONS:
            if kind == "gauss":
                noisy = images + level * torch.randn(images.shape, generator=generator)
            else:
                mask = torch.rand(images.shape, generator=generator) < level
                noisy = torch.where(mask, torch.rand(images.shape, generator=generator).round(),
                                    images)
            noisy = noisy.clamp(0, 1)
            correct = int((model(noisy).argmax(1) == labels).sum())
            rows.append(make_row(correct=correct, n=len(labels), benchmark="corruption",
                                 corruption=corruption, severity=severity, **base))
    return rows


def write_results(directory, rows, run=None):
    directory.mkdir(parents=True, exist_ok=True)
    to_frame(rows).to_csv(directory / "results.csv", index=False)
    if run is not None:
        (directory / "run.json").write_text(json.dumps(run))
    return directory


def degraded_copy(model, scale=0.15, seed=123):
    """The same model with its conv weights perturbed: a checkpoint that lost robustness."""
    damaged = DigitsCNN()
    damaged.load_state_dict(model.state_dict())
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in (damaged.conv1, damaged.conv2):
            conv.weight += scale * conv.weight.std() * torch.randn(conv.weight.shape,
                                                                   generator=generator)
    return damaged.eval()


@pytest.fixture(scope="session")
def baseline_file(digits_model, tmp_path_factory):
    model, images, labels = digits_model
    root = tmp_path_factory.mktemp("gate")
    results = write_results(root / "base", evaluate(model, images, labels, seed=0))
    assert main(["baseline", str(results), "-o", str(root / "baseline.json")]) == 0
    return root / "baseline.json"


def test_model_is_trained(digits_model):
    model, images, labels = digits_model
    accuracy = (model(images).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.85  # otherwise the gate tests below would prove little


def test_five_reruns_with_other_seeds_raise_no_alarm(digits_model, baseline_file, tmp_path,
                                                     capsys):
    model, images, labels = digits_model
    baseline = json.loads(baseline_file.read_text())
    base_noise = {c["corruption"] + c["severity"]: c["accuracy"] for c in baseline["cells"]}
    spread = []
    for seed in range(1, 6):
        results = write_results(tmp_path / f"seed{seed}", evaluate(model, images, labels, seed))
        assert main(["check", str(results), "--baseline", str(baseline_file)]) == 0, \
            capsys.readouterr().out
        out = capsys.readouterr().out
        assert "regression check: PASS" in out
        frame = to_frame(evaluate(model, images, labels, seed))
        noisy = frame[frame["benchmark"] == "corruption"]
        spread += [abs(a - base_noise[f"{c}{s:g}"]) for c, s, a in
                   zip(noisy["corruption"], noisy["severity"], noisy["accuracy"])]
    assert max(spread) > 0  # the seeds really changed the measured numbers


def test_degraded_checkpoint_is_caught(digits_model, baseline_file, tmp_path, capsys):
    model, images, labels = digits_model
    damaged = degraded_copy(model)
    rows = evaluate(damaged, images, labels, seed=7, sha="f" * 64)
    drop = rows[0]["accuracy"] - (model(images).argmax(1) == labels).float().mean().item()
    assert -0.30 < drop < -0.05  # a moderate loss, not a broken model
    results = write_results(tmp_path / "degraded", rows)
    assert main(["check", str(results), "--baseline", str(baseline_file)]) == 1
    out = capsys.readouterr().out
    assert "regression check: FAIL" in out and "REGRESSED" in out
    assert "corruption=gaussian_noise" in out and "digits_cnn" in out
    # A huge tolerance accepts the same run: the rule is CI separation plus tolerance.
    assert main(["check", str(results), "--baseline", str(baseline_file),
                 "--tolerance", "100"]) == 0


def test_missing_and_failed_cells_fail_the_gate(digits_model, baseline_file, tmp_path, capsys):
    model, images, labels = digits_model
    rows = evaluate(model, images, labels, seed=3)
    rows = [r for r in rows if r.get("corruption") != "impulse_noise"]  # missing
    failed = dict(rows.pop(0), status="failed", error="RuntimeError: boom", accuracy=np.nan)
    rows.append(failed)
    results = write_results(tmp_path / "partial", rows)
    report = tmp_path / "check.json"
    assert main(["check", str(results), "--baseline", str(baseline_file), "--json",
                 str(report)]) == 1
    out = capsys.readouterr().out
    assert "MISSING" in out and "impulse_noise" in out and "FAILED" in out
    statuses = {r["benchmark"] + (r["corruption"] or ""): r["status"]
                for r in json.loads(report.read_text())}
    assert statuses["clean"] == "FAILED"
    assert statuses["corruptionimpulse_noise"] == "MISSING"


def test_check_rejects_bad_input(tmp_path, baseline_file, capsys):
    assert main(["check", str(tmp_path / "nope"), "--baseline", str(baseline_file)]) == 2
    assert "results not found" in capsys.readouterr().err
    bogus = tmp_path / "bogus.json"
    bogus.write_text(json.dumps({"cells": []}))
    results = write_results(tmp_path / "r", [make_row(correct=1, n=2, model="m",
                                                      benchmark="clean")])
    assert main(["check", str(results), "--baseline", str(bogus)]) == 2
    assert "not a robust-eval baseline" in capsys.readouterr().err
    assert main(["check", str(results), "--baseline", str(baseline_file),
                 "--tolerance", "-1"]) == 2


def test_report_command_on_real_results(digits_model, tmp_path, capsys):
    pypdf = pytest.importorskip("pypdf") if not os.environ.get("CI") else __import__("pypdf")
    model, images, labels = digits_model
    rows = evaluate(model, images, labels, seed=0)
    rows += evaluate(degraded_copy(model), images, labels, seed=0, name="digits_cnn_damaged",
                     sha="f" * 64)
    spectral_base = dict(model="digits_cnn", checkpoint_sha256="0" * 64, dataset="digits")
    rows += evaluate_spectral(model, (8, 8), base=spectral_base, in_channels=1)
    results = write_results(tmp_path / "results", rows, run={
        "config": {"name": "digits-gate"},
        "models": [{"name": "digits_cnn", "checkpoint_sha256": "0" * 64}],
        "environment": {"torch": torch.__version__, "cuda": None, "device": "cpu"}})
    out_pdf = tmp_path / "out" / "report.pdf"
    markdown, latex, plots = tmp_path / "summary.md", tmp_path / "summary.tex", tmp_path / "plots"
    assert main(["report", str(results), "-o", str(out_pdf), "--markdown", str(markdown),
                 "--latex", str(latex), "--plots", str(plots), "--plot-format", "png",
                 "--plot-format", "svg"]) == 0
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(out_pdf).pages)
    clean = (model(images).argmax(1) == labels).float().mean().item()
    for needle in ("digits_cnn", "digits_cnn_damaged", f"{100 * clean:.2f}", "Failed cells",
                   "conv2", torch.__version__):
        assert needle in text
    assert f"{100 * clean:.2f}" in markdown.read_text()
    assert r"\toprule" in latex.read_text() and "digits\\_cnn" in latex.read_text()
    assert {p.name for p in plots.iterdir()} >= {"accuracy_vs_severity.png",
                                                  "accuracy_vs_severity.svg",
                                                  "spectral_norm.png"}
    assert main(["report", str(results), "-o", str(tmp_path / "r.txt")]) == 2
    capsys.readouterr()


def test_mce_reference_is_alexnet():
    from robust_eval.api import _mce_reference

    reference = _mce_reference("alexnet")
    assert len(reference) == 15 and reference["fog"][0] == pytest.approx(0.67474)
    assert _mce_reference(None) is None
