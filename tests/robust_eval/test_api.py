"""The Python API: robust_eval.evaluate/compare/report on live modules, checkpoints and archs,
through the one job runner and store (same rows as the CLI), and arch factories for workers."""
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from torch import nn

import robust_eval
from robust_eval.models import NormalizedModel, create_model, register_model
from robust_eval.models.tiny import TinyCNN
from robust_eval.validate import ConfigError

REPO = Path(__file__).resolve().parents[2]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Columns that may differ between two runs of the same cells (or name the model differently).
VOLATILE = ["created_at", "seconds", "cell_key", "model", "checkpoint_sha256", "code_version"]


class Net(NormalizedModel):
    """A module of this file, not registered: a bare network with its normalisation inside."""

    def __init__(self, bare: nn.Module, mean=(0.5,) * 3, std=(0.25,) * 3):
        super().__init__(bare, mean, std)


@register_model("api_test_cnn", default_mean=(0.5,) * 3, default_std=(0.25,) * 3,
                description="registered from a test module")
def api_test_cnn(norm: str = "bn", num_classes: int = 10) -> nn.Module:
    return TinyCNN(norm, num_classes, width=8)


def tiny_net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net(TinyCNN("bn"))


def sort_rows(frame: pd.DataFrame) -> pd.DataFrame:
    keys = ["benchmark", "corruption", "severity", "eps"]
    return frame.sort_values(keys, na_position="first").reset_index(drop=True)


@pytest.mark.slow
def test_a_live_module_gives_the_cli_rows_on_real_cifar10(he2016_checkpoints, cifar10_test_npz,
                                                          tmp_path):
    from robust_eval.checkpoints import load_checkpoint, save_checkpoint
    from robust_eval.cli import main

    bare = load_checkpoint(he2016_checkpoints / "resnet20-12fca82f.th", arch="resnet20",
                           mean=IMAGENET_MEAN, std=IMAGENET_STD).model
    net = Net(bare, IMAGENET_MEAN, IMAGENET_STD).train()
    root = str(cifar10_test_npz.parent)
    result = robust_eval.evaluate(
        net, "cifar10", root, ["clean", "fgsm", {"type": "corruption", "corruptions": ["fog"],
                                                 "severities": [1, 3]}],
        limit=64, device="cpu", progress=False, out=tmp_path / "api")
    assert net.training  # the caller's module is handed back in its own mode

    path = tmp_path / "resnet20.safetensors"
    save_checkpoint(net, path, arch="resnet20", norm="bn", num_classes=10, mean=net.mean,
                    std=net.std, input_size=(32, 32))
    assert main(["evaluate", "--checkpoint", str(path), "--dataset", "cifar10", "--data-root",
                 root, "--limit", "64", "--benchmark", "clean,fgsm,corruption", "--corruptions",
                 "fog", "--severities", "1,3", "--device", "cpu", "--no-progress",
                 "--out", str(tmp_path / "cli")]) == 0
    cli = pd.read_parquet(tmp_path / "cli" / "results.parquet")

    assert len(result) == len(cli) == 4 and set(result["status"]) == {"ok"}
    assert (result["model"] == "Net").all() and (result["arch"] == "resnet20").all()
    api_rows, cli_rows = sort_rows(result.drop(columns=VOLATILE)), sort_rows(cli.drop(
        columns=VOLATILE))
    pd.testing.assert_frame_equal(pd.DataFrame(api_rows), cli_rows, check_dtype=False)
    fgsm, clean, fog1, fog3 = api_rows["accuracy"]  # sorted: attack, clean, corruption s1, s3
    # a real ResNet-20: high clean accuracy; FGSM 8/255 and fog severity 3 cost accuracy
    assert clean > 0.8 and fgsm < clean - 0.3 and fog3 < fog1


def counting_cells(monkeypatch):
    from robust_eval.jobs import cells

    calls = []
    real = cells.execute_cell

    def spy(cell, device, **kwargs):
        calls.append(cell["key"])
        return real(cell, device, **kwargs)

    monkeypatch.setattr(cells, "execute_cell", spy)
    return calls


def test_out_reuses_every_cell_and_a_changed_weight_none(tmp_path, monkeypatch):
    calls = counting_cells(monkeypatch)
    net = tiny_net()
    args = dict(dataset="digits", benchmarks=["clean", "fgsm"], limit=32, out=tmp_path,
                progress=False)
    first = robust_eval.evaluate(net, **args)
    assert len(calls) == 2 and len(first) == 2
    again = robust_eval.evaluate(tiny_net(), **args)  # another instance, the same tensors
    assert len(calls) == 2
    pd.testing.assert_frame_equal(pd.DataFrame(first), pd.DataFrame(again))

    with torch.no_grad():
        net.model.linear.weight[0, 0] += 1.0
    with pytest.raises(ValueError, match=r"model 'Net' .*replace=True"):
        robust_eval.evaluate(net, **args)
    changed = robust_eval.evaluate(net, **args, replace=True)
    assert len(calls) == 4 and not set(changed["cell_key"]) & set(first["cell_key"])
    stored = pd.read_csv(tmp_path / "results.csv")
    assert sorted(stored["cell_key"]) == sorted(changed["cell_key"])


def test_benchmarks_are_validated_by_the_config_code():
    net = tiny_net()
    with pytest.raises(ConfigError, match=r"^benchmarks\[1\]\.eps\[0\]: "):
        robust_eval.evaluate(net, "digits", benchmarks=[
            "clean", {"type": "attack", "attack": "pgd", "eps": ["8/25x"]}])
    with pytest.raises(ConfigError, match=r"^benchmarks\[0\]: unknown benchmark 'fgsn'"):
        robust_eval.evaluate(net, "digits", benchmarks=["fgsn"])
    with pytest.raises(ConfigError, match=r"^benchmarks\[0\]\.severities"):
        robust_eval.evaluate(net, "digits", benchmarks={"type": "corruption", "severities": [9]})
    with pytest.raises(ValueError, match="data_root: dataset 'cifar10' needs"):
        robust_eval.evaluate(net)


def test_names_map_like_the_cli_and_seed_is_the_jobs():
    from robust_eval.api import _benchmark_entries

    pgd, corruption = _benchmark_entries(["pgd", "corruption"])
    assert pgd == {"type": "attack", "attack": "pgd"}  # the attack's own eps and steps
    assert corruption["corruptions"] == "benchmark" and corruption["severities"] == [1, 2, 3, 4, 5]


def test_in_memory_models_refuse_other_processes(tmp_path):
    with pytest.raises(ValueError, match=r"in-memory nn.Module: it runs in this process only"):
        robust_eval.evaluate(tiny_net(), "digits", executor="ray", progress=False)
    with pytest.raises(ValueError, match=r"in-memory"):
        robust_eval.evaluate(tiny_net(), "digits", workers=2, progress=False)


def test_evaluate_is_callable_and_still_the_benchmark_package():
    from robust_eval.evaluate import BENCHMARKS, Benchmark

    assert callable(robust_eval.evaluate) and "clean" in BENCHMARKS
    assert issubclass(type(BENCHMARKS.get("clean")), Benchmark)
    assert robust_eval.compare is robust_eval.api.compare
    code = ("import sys, robust_eval; assert 'robust_eval.api' not in sys.modules; "
            "assert 'robust_eval.evaluate' not in sys.modules; assert 'pandas' not in "
            "sys.modules; print(callable(robust_eval.evaluate), robust_eval.report.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"),
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "report"]


def test_a_checkpoint_path_and_a_user_registered_arch(tmp_path):
    torch.manual_seed(3)
    model = create_model("api_test_cnn")
    weights = tmp_path / "user.pt"
    torch.save(model.model.state_dict(), weights)
    by_arch = robust_eval.evaluate("api_test_cnn", "digits", limit=40, checkpoint=weights,
                                   progress=False)
    assert by_arch.loc[0, "arch"] == "api_test_cnn" and by_arch.loc[0, "model"] == "user"
    live = robust_eval.evaluate(model, "digits", limit=40, progress=False)
    assert live.loc[0, "arch"] == "api_test_cnn"  # the module's own record (create_model)
    assert by_arch.loc[0, "correct"] == live.loc[0, "correct"]
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        robust_eval.evaluate(str(tmp_path / "absent.pt"), "digits")
    with pytest.raises(ConfigError, match=r"models\[0\]\.arch: unknown model 'api_test_cnx'"):
        robust_eval.evaluate("api_test_cnx", "digits", checkpoint=weights)


def test_summary_is_a_compact_pivot():
    result = robust_eval.evaluate(tiny_net(), "digits", benchmarks=[
        "clean", {"type": "attack", "attack": "fgsm", "eps": [0, "8/255"]}], limit=40,
        progress=False, model_name="tiny")
    table = result.summary()
    assert list(table.columns) == ["tiny"]
    assert list(table.index) == [("clean", ""), ("attack", "fgsm eps=0"),
                                 ("attack", "fgsm eps=8/255")]
    clean = result.iloc[0]
    assert table.iloc[0, 0] == (f"{100 * clean.accuracy:.2f} [{100 * clean.ci_low:.2f}, "
                                f"{100 * clean.ci_high:.2f}] n=40")
    # eps 0 is the clean accuracy, measured again through the attack
    assert table.iloc[1, 0] == table.iloc[0, 0]
    assert isinstance(result[result["benchmark"] == "clean"], robust_eval.api.Results)


def test_compare_pairs_the_examples_both_models_saw(tmp_path):
    from reports.paired import mcnemar, unpaired_difference

    a = robust_eval.evaluate(tiny_net(0), "digits", limit=60, progress=False, out=tmp_path)
    b = robust_eval.evaluate(tiny_net(1), "digits", limit=60, progress=False)
    table = robust_eval.compare(a, b)
    cells = table[table["scope"] == "cell"]
    assert len(cells) == 1
    row = cells.iloc[0]
    assert (row["model"], row["reference"], row["benchmark"]) == ("2/Net", "1/Net", "clean")
    assert row["delta"] == pytest.approx(100 * (b.loc[0, "accuracy"] - a.loc[0, "accuracy"]))
    assert row["method"].startswith("paired")
    right_a = a.attrs["outcomes"]["correct"].to_numpy()
    right_b = b.attrs["outcomes"]["correct"].to_numpy()
    assert row["p_value"] == pytest.approx(mcnemar(right_a, right_b).p_value)
    flipped = robust_eval.compare(tmp_path, b, reference="2/Net")  # a folder works too
    assert flipped[flipped["scope"] == "cell"].iloc[0]["delta"] == pytest.approx(-row["delta"])
    bare = b.copy()
    bare.attrs = {}  # no outcomes: the unpaired fallback, and it says so
    unpaired = robust_eval.compare(a, bare)
    row = unpaired[unpaired["scope"] == "cell"].iloc[0]
    assert row["method"].startswith("unpaired")
    expected = unpaired_difference(a.loc[0, "correct"], 60, b.loc[0, "correct"], 60)
    assert row["p_value"] == pytest.approx(expected.p_value)
    with pytest.raises(ValueError, match="reference model 'x' is not in"):
        robust_eval.compare(a, b, reference="x")


def test_report_writes_the_pdf_and_tables(tmp_path):
    result = robust_eval.evaluate(tiny_net(), "digits", benchmarks=["clean", "fgsm"], limit=40,
                                  progress=False)
    written = robust_eval.report(result, tmp_path / "r.pdf", markdown=tmp_path / "s.md")
    assert written == [tmp_path / "r.pdf", tmp_path / "s.md"]
    assert (tmp_path / "r.pdf").read_bytes()[:4] == b"%PDF"
    assert "Net" in (tmp_path / "s.md").read_text()
    with pytest.raises(ValueError, match="ending in .pdf"):
        robust_eval.report(result, tmp_path / "r.txt")


# ----------------------------------------------------------------------------- arch factories
FACTORY = '''
import torch
from torch import nn


class Small(nn.Module):
    """Normalises itself; its keys all start with `model.` (a wrapper of its own)."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.model = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                   nn.Flatten(), nn.Linear(8, num_classes))
        self.register_buffer("center", torch.full((1, 3, 1, 1), 0.5), persistent=False)

    def forward(self, x):
        return self.model((x - self.center) / 0.25)


def build(num_classes=10):
    return Small(num_classes)


NOT_CALLABLE = 3
'''


@pytest.fixture
def factory(tmp_path, monkeypatch):
    """An importable module of user code; Ray workers find it through PYTHONPATH."""
    name = f"user_factory_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    module = __import__(name)
    torch.manual_seed(0)
    model = module.build()
    weights = tmp_path / "small.pt"
    torch.save(model.state_dict(), weights)
    config = {"name": "factory", "device": "cpu", "batch_size": 64,
              "models": [{"name": "small", "arch": f"{name}:build", "checkpoint": str(weights)}],
              "datasets": [{"name": "digits", "kind": "digits", "limit": 48}],
              "benchmarks": [{"type": "clean"}, {"type": "attack", "attack": "fgsm"}]}
    return name, model, config


def test_a_factory_arch_runs_a_config_and_is_validated(factory, tmp_path):
    from robust_eval.data import load_split
    from robust_eval.evaluate.clean import count_correct
    from robust_eval.jobs import parse_config, run_job

    name, model, config = factory
    summary = run_job(parse_config(config), tmp_path / "local", progress=False,
                      echo=lambda s: None)
    frame = summary.frame
    assert summary.exit_code == 0 and list(frame["arch"]) == [f"{name}:build"] * 2
    assert frame["norm"].isna().all() and list(frame["mean"]) == ["0,0,0"] * 2
    data = load_split("digits", limit=48)
    assert frame.loc[0, "correct"] == count_correct(model.eval(), data.images, data.labels)[0]

    for arch, message in ((f"{name}_absent:build", "cannot import module"),
                          (f"{name}:nothing", "has no attribute 'nothing'"),
                          (f"{name}:NOT_CALLABLE", "'NOT_CALLABLE' is not callable (int)")):
        config["models"][0]["arch"] = arch
        with pytest.raises(ConfigError, match=re.escape(f"models[0].arch: arch {arch!r}: ")
                           + ".*" + re.escape(message)):
            parse_config(config)


def test_a_checkpoint_never_names_a_factory(factory, tmp_path):
    from safetensors.torch import save_file

    from robust_eval.checkpoints import CheckpointError, load_checkpoint

    name, model, _ = factory
    path = tmp_path / "named.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"format": "robust-eval", "robust_eval": f'{{"arch": "{name}:build"}}'})
    with pytest.raises(CheckpointError, match="never chooses code to import"):
        load_checkpoint(path)
    loaded = load_checkpoint(path, arch=f"{name}:build")  # named by the caller: fine
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model.eval()(x))


@pytest.mark.slow
def test_a_factory_arch_runs_on_ray(factory, tmp_path):
    ray = pytest.importorskip("ray")
    from robust_eval.jobs import parse_config, run_job
    from robust_eval.jobs.executors import RayExecutor

    _, _, config = factory
    local = run_job(parse_config(config), tmp_path / "local", progress=False,
                    echo=lambda s: None)
    try:
        remote = run_job(parse_config(config), tmp_path / "ray", progress=False,
                         echo=lambda s: None, executor=RayExecutor(device="cpu", num_cpus=2))
    finally:
        ray.shutdown()
    assert local.exit_code == remote.exit_code == 0
    columns = ["model", "arch", "benchmark", "eps", "n", "correct", "cell_key", "status"]
    pd.testing.assert_frame_equal(local.frame[columns], remote.frame[columns])


def test_the_examples_of_docs_api_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "api.md").read_text(), re.S)
    assert len(blocks) == 6
    monkeypatch.chdir(tmp_path)  # the examples write runs/, *.pt and the report here
    namespace = {"__name__": "docs_api"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/api.md python block {i + 1}", "exec"), namespace)
    assert (tmp_path / "digits-report.pdf").read_bytes()[:4] == b"%PDF"
