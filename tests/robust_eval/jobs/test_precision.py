"""`precision`: a job-wide or per-benchmark field, part of the cell key and a result column."""
import copy
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from robust_eval.jobs import run_job
from robust_eval.jobs.config import ConfigError, parse_config
from robust_eval.jobs.grid import cell_key, expand, model_identity

BASE = {
    "name": "t",
    "models": [{"name": "m", "checkpoint": "m.safetensors", "arch": "tiny_cnn", "norm": "bn"}],
    "datasets": [{"name": "digits", "kind": "digits"}],
    "benchmarks": [
        {"type": "clean"},
        {"type": "attack", "attack": "pgd", "eps": ["2/255"], "steps": 3},
        {"type": "attack", "attack": "fgsm", "eps": ["2/255"], "engine": "torchattacks"},
        {"type": "spectral"},
    ],
}


def cells_of(mutate=None):
    raw = copy.deepcopy(BASE)
    if mutate:
        mutate(raw)
    config = parse_config(raw, source="cfg.yaml", base_dir=Path("/base"))
    identities = {m.name: model_identity(m, "0" * 64) for m in config.models}
    return config, expand(config, identities, "v1")


def test_job_precision_reaches_the_cells_that_honour_it():
    config, cells = cells_of(lambda r: r.update(precision="bf16"))
    assert config.precision == "bf16"
    by_type = {(c.benchmark, c.params.get("engine")): c.precision for c in cells}
    # the native attack engine takes bf16; torchattacks and spectral (weights only) stay fp32
    assert by_type == {("clean", None): "bf16", ("attack", "native"): "bf16",
                       ("attack", "torchattacks"): "fp32", ("spectral", None): "fp32"}
    assert "bf16" in next(c for c in cells if c.benchmark == "clean").label()


def test_a_benchmark_sets_its_own_precision_and_the_default_is_fp32():
    _, cells = cells_of(lambda r: r["benchmarks"][0].update(precision="bf16"))
    assert [c.precision for c in cells] == ["bf16", "fp32", "fp32", "fp32"]


def test_fp32_and_bf16_cells_are_different_cells():
    def both(raw):
        raw["benchmarks"] = [{"type": "clean"}, {"type": "clean", "precision": "bf16"}]

    _, cells = cells_of(both)
    assert [c.precision for c in cells] == ["fp32", "bf16"]
    assert cells[0].key != cells[1].key and cells[0].params == cells[1].params
    # fp32 keeps the key it had before precisions existed: stored results stay valid
    config, _ = cells_of()
    identity = model_identity(config.models[0], "0" * 64)
    args = ("m", identity, config.datasets[0], "clean", {}, 0, None, "v1")
    assert cells[0].key == cell_key(*args) == cell_key(*args, "fp32") != cell_key(*args, "bf16")


@pytest.mark.parametrize("mutate, path", [
    (lambda r: r.update(precision="fp16"), "precision"),
    (lambda r: r["benchmarks"][0].update(precision="half"), "benchmarks[0].precision"),
    (lambda r: r["benchmarks"][2].update(precision="bf16"), "benchmarks[2].precision"),
    (lambda r: r["benchmarks"][3].update(precision="bf16"), "benchmarks[3].precision"),
])
def test_bad_precisions_name_the_field(mutate, path):
    with pytest.raises(ConfigError, match=re.escape(f"cfg.yaml: {path}: ")):
        cells_of(mutate)


def test_runner_precision_override_and_the_precision_column(tmp_path):
    from robust_eval.checkpoints import save_checkpoint
    from robust_eval.models import create_model

    torch.manual_seed(0)
    model, checkpoint = create_model("tiny_cnn", norm="bn"), tmp_path / "m.safetensors"
    save_checkpoint(model, checkpoint, arch="tiny_cnn", norm="bn", num_classes=10,
                    mean=model.mean, std=model.std, input_size=(32, 32))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "name": "p", "device": "cpu", "batch_size": 32,
        "models": [{"name": "m", "checkpoint": str(checkpoint)}],
        "datasets": [{"name": "digits", "kind": "digits", "limit": 24}],
        "benchmarks": [{"type": "clean"}, {"type": "clean", "precision": "fp32"},
                       {"type": "attack", "attack": "fgsm", "eps": ["8/255"]}]}))
    plan = run_job(config, tmp_path / "out", dry_run=True, precision="bf16", echo=lambda s: None)
    # the run-wide override replaces the config's precision; a benchmark's own still wins
    assert [c.precision for c in plan.cells] == ["bf16", "fp32", "bf16"]
    with pytest.raises(ValueError, match="precision 'fp16'"):
        run_job(config, tmp_path / "out", dry_run=True, precision="fp16")

    summary = run_job(config, tmp_path / "out", progress=False, precision="bf16",
                      echo=lambda s: None)
    assert summary.exit_code == 0
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert sorted(zip(table["benchmark"], table["precision"])) == [
        ("attack", "bf16"), ("clean", "bf16"), ("clean", "fp32")]
    clean = table[table["benchmark"] == "clean"]
    assert clean["cell_key"].is_unique and (clean["n"] == 24).all()
    # reports and pivots keep the precisions apart: a bf16 row reads as its own model
    from reports.results import load_results

    assert sorted(set(load_results(tmp_path / "out").frame["model"])) == ["m", "m (bf16)"]
    eps = pd.read_csv(tmp_path / "out" / "tables" / "accuracy_vs_eps.csv")
    assert "m (bf16)/digits" in eps.columns


def test_the_cli_flags_set_the_job_precision(tmp_path):
    from robust_eval.cli import build_parser
    from robust_eval.cli.evaluate import job_from_args

    checkpoint = tmp_path / "m.pt"
    checkpoint.write_bytes(b"")
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--dataset", "digits"]
    assert job_from_args(build_parser(argv).parse_args(argv))["precision"] == "fp32"
    argv += ["--precision", "bf16"]
    assert job_from_args(build_parser(argv).parse_args(argv))["precision"] == "bf16"
    run = build_parser(["run"]).parse_args(["run", "c.yaml", "--precision", "bf16"])
    assert run.precision == "bf16"
    assert build_parser(["run"]).parse_args(["run", "c.yaml"]).precision is None
