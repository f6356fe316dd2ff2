"""`robust-eval report | baseline | check` on results of real (tiny) models.

The gate tests read folders written by `robust-eval evaluate --out` (conftest.py: a tiny_cnn
trained on scikit-learn digits, and a copy with damaged weights). The report test trains a
smaller CNN on 8x8 digits and writes its rows directly, with spectral rows.
"""
import json
import os

import pytest
import torch
from torch import nn

from robust_eval.cli import main
from robust_eval.evaluate.spectral import evaluate_spectral
from robust_eval.schema import make_row, to_frame

pytestmark = pytest.mark.slow  # the session fixtures train for several seconds

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


def run(argv, capsys):
    """(exit code, stdout, stderr) of `robust-eval ARGV`."""
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.fixture(scope="session")
def frozen(digits_runs, tmp_path_factory):
    path = tmp_path_factory.mktemp("baseline") / "baseline.json"
    assert main(["baseline", str(digits_runs["base"]), "-o", str(path)]) == 0
    return path


def copy_run(source, target):
    import shutil

    shutil.copytree(source, target)
    return target


def test_baseline_keeps_counts_identity_and_outcomes(frozen):
    baseline = json.loads(frozen.read_text())
    assert baseline["version"] == 2 and len(baseline["cells"]) == 5
    cell = baseline["cells"][0]
    assert cell["n"] == 360 and cell["arch"] == "tiny_cnn" and cell["mean"] == "0.5,0.5,0.5"
    assert len(cell["fingerprint"]) == 16 and len(cell["checkpoint_sha256"]) == 64
    assert cell["outcomes"]["n"] == 360 and "ci_low" not in cell
    assert frozen.stat().st_size < 10_000


def test_rerun_with_another_corruption_seed_passes(digits_runs, frozen, capsys):
    rc, out, _ = run(["check", digits_runs["rerun"], "--baseline", frozen], capsys)
    assert rc == 0, out
    assert out.startswith("regression check: PASS (5 cells + 3 aggregates tested: 8 ok)")
    assert "method: paired McNemar: 5; paired bootstrap: 3" in out
    moved = [line for line in out.splitlines() if line.startswith("ok ")]
    assert moved and "deltas: " in out  # the summary and the largest moves print on a pass too
    assert any(not line.split()[-3].startswith("+0.00") for line in moved)  # seeds moved cells


def test_worse_weights_under_the_same_name_fail(digits_runs, frozen, tmp_path, capsys):
    report = tmp_path / "check.json"
    rc, out, _ = run(["check", digits_runs["worse"], "--baseline", frozen, "--tolerance", "1",
                      "--json", report], capsys)
    assert rc == 1
    assert out.startswith("regression check: FAIL") and "REGRESSED" in out
    assert "corruption mean (2 corruptions, 2 severities)" in out
    assert "warning: digits_cnn: checkpoint_sha256 changed" in out
    data = json.loads(report.read_text())
    assert data["verdict"] == "FAIL" and data["tolerance_pp"] == 1
    aggregate = next(r for r in data["results"] if r["scope"] == "aggregate" and
                     r["severity"] is None)
    assert aggregate["status"] == "REGRESSED" and aggregate["method"] == "paired bootstrap"
    assert aggregate["delta"] < -10 and aggregate["ci_high"] < -1
    # A tolerance above the drop passes it; tolerance is in percentage points.
    assert run(["check", digits_runs["worse"], "--baseline", frozen, "--tolerance", "40"],
               capsys)[0] == 0


def test_stale_parquet_is_never_preferred(digits_runs, frozen, tmp_path, capsys):
    folder = copy_run(digits_runs["base"], tmp_path / "stale")  # older parquet + outcomes
    (folder / "results.csv").write_text((digits_runs["worse"] / "results.csv").read_text())
    rc, _, err = run(["check", folder, "--baseline", frozen], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert f"{folder / 'results.csv'} and {folder / 'results.parquet'} disagree" in err
    (folder / "results.parquet").unlink()  # the CSV alone: its outcomes.parquet is stale too
    rc, out, err = run(["check", folder, "--baseline", frozen], capsys)
    assert rc == 1 and "REGRESSED" in out
    assert "unpaired (new has no per-example outcomes)" in out
    assert "outcomes of 5 cell(s) absent from results.csv ignored" in err


def test_accuracy_cut_by_20_points_fails(digits_runs, frozen, tmp_path, capsys):
    import pandas as pd

    folder = copy_run(digits_runs["rerun"], tmp_path / "edited")
    table = pd.read_csv(folder / "results.csv")
    corrupt = table["benchmark"] == "corruption"
    edited = table.copy()
    edited.loc[corrupt, "accuracy"] -= 0.20  # counts and interval columns untouched
    edited.to_csv(folder / "results.csv", index=False)
    (folder / "results.parquet").unlink()
    rc, _, err = run(["check", folder, "--baseline", frozen], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert f"{folder / 'results.csv'}: row 1 (model=digits_cnn benchmark=corruption" in err
    assert "stores accuracy" in err
    # Counts cut as well, consistently, intervals untouched: the outcomes give it away ...
    edited["correct"] = table["correct"] - corrupt * 72
    edited["accuracy"] = edited["correct"] / edited["n"]
    edited.to_csv(folder / "results.csv", index=False)
    rc, _, err = run(["check", folder, "--baseline", frozen], capsys)
    assert rc == 2 and "outcomes.parquet: cell" in err and "the folder mixes runs" in err
    # ... and without them the recomputed accuracy fails the gate (stored CIs never used).
    (folder / "outcomes.parquet").unlink()
    rc, out, _ = run(["check", folder, "--baseline", frozen, "--tolerance", "1"], capsys)
    assert rc == 1 and out.count("REGRESSED  digits_cnn") == 4 + 3


@pytest.mark.parametrize("edit, field", [
    (lambda b: b.update(cells=[]), "field 'cells' is empty"),
    (lambda b: b["cells"][1].update(correct=float("nan")), "cells[1].correct is nan"),
    (lambda b: b["cells"][2].pop("benchmark"), "cells[2].benchmark must be a string"),
    (lambda b: b["cells"][0].update(n="360"), "cells[0].n must be a number, got '360'"),
    (lambda b: b.update(version=1), "re-freeze it with `robust-eval baseline"),
])
def test_unusable_baselines_exit_2_with_one_line(digits_runs, frozen, tmp_path, capsys, edit,
                                                 field):
    baseline = json.loads(frozen.read_text())
    edit(baseline)
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    rc, out, err = run(["check", digits_runs["rerun"], "--baseline", path], capsys)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"robust-eval check: error: {path}")
    assert field in err


def test_changed_n_is_a_warning(digits_checkpoints, digits_tools, tmp_path, capsys):
    flags = ("--split", "train", "--limit")
    big = digits_tools.evaluate(digits_checkpoints["good"], tmp_path / "n500", *flags, "500",
                                benchmark="clean")
    small = digits_tools.evaluate(digits_checkpoints["good"], tmp_path / "n300", *flags, "300",
                                  benchmark="clean")
    assert main(["baseline", str(big), "-o", str(tmp_path / "b.json")]) == 0
    capsys.readouterr()
    rc, out, _ = run(["check", small, "--baseline", tmp_path / "b.json"], capsys)
    assert rc == 0, out
    assert "warning: digits_cnn: n changed 500 -> 300 (1 cells)" in out
    assert "warning: digits_cnn: fingerprint changed" in out
    assert "unpaired (different examples (fingerprint))" in out
    rc, out, _ = run(["check", small, "--baseline", tmp_path / "b.json", "--strict"], capsys)
    assert rc == 1 and "FAILURE (--strict): digits_cnn: n changed 500 -> 300" in out


def test_changed_checkpoint_warns_and_fails_when_strict(digits_checkpoints, digits_tools,
                                                        frozen, tmp_path, capsys):
    folder = digits_tools.evaluate(digits_checkpoints["resaved"], tmp_path / "resaved")
    rc, out, _ = run(["check", folder, "--baseline", frozen], capsys)
    assert rc == 0 and "regression check: PASS" in out
    assert "warning: digits_cnn: checkpoint_sha256 changed" in out
    assert "deltas: 0 down" in out  # the same weights: every example agrees
    rc, out, _ = run(["check", folder, "--baseline", frozen, "--strict"], capsys)
    assert rc == 1 and out.startswith("regression check: FAIL")
    assert "FAILURE (--strict): digits_cnn: checkpoint_sha256 changed" in out


def test_check_rejects_bad_arguments(digits_runs, frozen, tmp_path, capsys):
    rc, _, err = run(["check", tmp_path / "nope", "--baseline", frozen], capsys)
    assert rc == 2 and "results not found" in err
    for flag, value in (("--tolerance", "-1"), ("--tolerance", "nan"), ("--alpha", "0")):
        rc, _, err = run(["check", digits_runs["rerun"], "--baseline", frozen, flag, value],
                         capsys)
        assert rc == 2 and flag in err
    bogus = tmp_path / "bogus.json"
    bogus.write_text(json.dumps({"cells": []}))
    rc, _, err = run(["check", digits_runs["rerun"], "--baseline", bogus], capsys)
    assert rc == 2 and "not a robust-eval baseline" in err


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
    for needle in ("digits_cnn", "digits_cnn_damaged", f"{100 * clean:.1f} [", "Failed cells",
                   "conv2", torch.__version__):
        assert needle in text
    summary = markdown.read_text()
    assert f"**{100 * clean:.2f}**" in summary  # significantly better than the damaged copy
    damaged = next(line for line in summary.splitlines() if "digits_cnn_damaged" in line)
    assert "*" in damaged and "**" not in damaged  # differs from the reference, not the best
    assert "- **significance**: a * marks a value that differs from digits_cnn" in summary
    assert r"\toprule" in latex.read_text() and "digits\\_cnn" in latex.read_text()
    assert r"\textbf{" + f"{100 * clean:.2f}" + "}" in latex.read_text()
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


@pytest.mark.shared
def test_swap_on_real_cifar10(he2016_checkpoints, cifar10_test_npz, tmp_path, capsys):
    """benchmarks/gate_swap.py in small: ResNet-56 as the baseline, ResNet-20's weights under
    the same model name must fail the gate on the corruption aggregate; ResNet-56 with another
    corruption seed must pass; compare must call the aggregate significantly worse."""
    checkpoints = {"resnet56": "resnet56-4bfd9763.th", "resnet20": "resnet20-12fca82f.th"}

    def evaluate(arch, seed):
        out = tmp_path / f"{arch}-seed{seed}"
        assert main(["evaluate", "--checkpoint", str(he2016_checkpoints / checkpoints[arch]),
                     "--arch", arch, "--mean", ".485,.456,.406", "--std", ".229,.224,.225",
                     "--model-name", "resnet", "--dataset", "cifar10", "--data-root",
                     str(cifar10_test_npz.parent), "--limit", "200", "--benchmark",
                     "clean,corruption", "--corruptions", "gaussian_noise,contrast",
                     "--severities", "3", "--corruption-seed", str(seed), "--out", str(out),
                     "--no-progress"]) == 0
        return out

    base, swap, again = evaluate("resnet56", 0), evaluate("resnet20", 0), evaluate("resnet56", 1)
    assert main(["baseline", str(base), "-o", str(tmp_path / "b.json")]) == 0
    capsys.readouterr()
    rc, out, _ = run(["check", swap, "--baseline", tmp_path / "b.json", "--tolerance", "1"],
                     capsys)
    assert rc == 1, out
    assert "REGRESSED  resnet  corruption mean (2 corruptions, severity 3)" in out
    assert "warning: resnet: arch changed resnet56 -> resnet20 (3 cells)" in out
    rc, out, _ = run(["check", again, "--baseline", tmp_path / "b.json", "--tolerance", "1"],
                     capsys)
    assert rc == 0, out
    rc, out, _ = run(["compare", base, swap, "--reference", "resnet56-seed0/resnet",
                      "--json", tmp_path / "compare.json"], capsys)
    assert rc == 0
    records = json.loads((tmp_path / "compare.json").read_text())
    aggregate = next(r for r in records if r["scope"] == "aggregate")
    assert aggregate["verdict"] == "worse" and aggregate["method"] == "paired bootstrap"
    assert aggregate["ci_high"] < 0 and aggregate["p_adjusted"] < 0.05
