"""One benchmark protocol: `evaluate` and `run` are two front ends over the same benchmark types,
runner and store, so they give the same rows, the same guards and the same exit codes."""
import json

import pandas as pd
import pytest
import torch
import yaml

from robust_eval.cli import main
from robust_eval.evaluate import BENCHMARKS, Benchmark, CellPlan, register_benchmark
from robust_eval.jobs import run_job

IMAGENET_STATS = ["--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"]
VOLATILE = ["created_at", "seconds"]


def _tiny_checkpoint(path, seed=0, nan=False):
    from robust_eval.checkpoints import save_checkpoint
    from robust_eval.models import create_model

    torch.manual_seed(seed)
    model = create_model("tiny_cnn", norm="bn").eval()
    if nan:
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] = float("nan")
    save_checkpoint(model, path, arch="tiny_cnn", norm="bn", num_classes=10, mean=model.mean,
                    std=model.std, input_size=(32, 32))
    return path


@pytest.fixture
def toy_benchmark():
    """A benchmark type defined outside the package: one module, one registration."""

    @register_benchmark
    class DarkImages(Benchmark):
        name = "dark_images"
        fields = ("factors",)

        def add_arguments(self, parser):
            parser.add_argument("--dark-factors", default="0.5")

        def options_from_args(self, args, cli_name):
            return {"type": self.name, "factors": args.dark_factors.split(",")}

        def parse(self, raw, check, path, job_seed):
            factors = check.sequence(raw.get("factors", [0.5]), f"{path}.factors",
                                     allow_scalar=True)
            return {"factors": [check.number(f, f"{path}.factors[{i}]", minimum=0, maximum=1)
                                for i, f in enumerate(factors)]}

        def expand(self, options, seed, dataset_kind=None):
            for factor in options["factors"]:
                yield CellPlan({"factor": factor}, seed)

        def label(self, params, seed):
            return f"x{params['factor']:g}"

        def run(self, cell, ctx):
            from robust_eval.evaluate.clean import count_correct

            data = ctx.data()
            dark = (data.images.float() * cell["params"]["factor"]).to(torch.uint8)
            correct, n = count_correct(ctx.model(), dark, data.labels, ctx.batch_size,
                                       ctx.device)
            return [{"correct": correct, "n": n, "metric": f"x{cell['params']['factor']:g}"}]

    yield DarkImages
    BENCHMARKS._entries.pop("dark_images")


def _rows(folder):
    frame = pd.read_csv(folder / "results.csv")
    return frame.drop(columns=VOLATILE).sort_values("cell_key").reset_index(drop=True)


def test_toy_benchmark_runs_through_evaluate_and_run_with_identical_rows(tmp_path,
                                                                         toy_benchmark):
    checkpoint = _tiny_checkpoint(tmp_path / "tiny.safetensors")
    rc = main(["evaluate", "--checkpoint", str(checkpoint), "--dataset", "digits", "--limit",
               "60", "--benchmark", "clean,dark_images", "--dark-factors", "0.5,0.25",
               "--out", str(tmp_path / "evaluate"), "--no-progress"])
    assert rc == 0
    config = {"name": "toy", "models": [{"name": "tiny", "checkpoint": str(checkpoint)}],
              "datasets": [{"name": "digits", "kind": "digits", "limit": 60}],
              "device": "cpu", "batch_size": 256,
              "benchmarks": [{"type": "clean"}, {"type": "dark_images", "factors": [0.5, 0.25]}]}
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "toy.yaml"), "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    via_evaluate, via_run = _rows(tmp_path / "evaluate"), _rows(tmp_path / "run")
    assert len(via_evaluate) == 3 and set(via_evaluate["benchmark"]) == {"clean", "dark_images"}
    pd.testing.assert_frame_equal(via_evaluate, via_run)
    dark = via_run[via_run["benchmark"] == "dark_images"]
    assert sorted(json.loads(p)["factor"] for p in dark["params"]) == [0.25, 0.5]


@pytest.mark.slow
def test_real_resnet20_same_cells_same_numbers_on_both_paths(he2016_checkpoints,
                                                             cifar10_test_npz, tmp_path):
    """Clean, fog severity 3 and FGSM 2/255 on 200 real images: identical rows either way."""
    checkpoint = he2016_checkpoints / "resnet20-12fca82f.th"
    root = cifar10_test_npz.parent
    rc = main(["evaluate", "--arch", "resnet20", "--checkpoint", str(checkpoint),
               *IMAGENET_STATS, "--dataset", "cifar10", "--data-root", str(root), "--limit",
               "200", "--benchmark", "clean,corruption,fgsm", "--corruptions", "fog",
               "--severities", "3", "--eps", "2/255", "--out", str(tmp_path / "evaluate"),
               "--no-progress"])
    assert rc == 0
    config = {
        "name": "same", "device": "cpu",
        "models": [{"name": "resnet20-12fca82f", "checkpoint": str(checkpoint),
                    "arch": "resnet20", "mean": [0.485, 0.456, 0.406],
                    "std": [0.229, 0.224, 0.225]}],
        "datasets": [{"name": "cifar10", "kind": "cifar10", "root": str(root), "limit": 200}],
        "benchmarks": [{"type": "clean"},
                       {"type": "corruption", "corruptions": ["fog"], "severities": [3]},
                       {"type": "attack", "attack": "fgsm", "eps": ["2/255"]}]}
    summary = run_job(_write(tmp_path / "same.yaml", config), tmp_path / "run", progress=False)
    assert summary.exit_code == 0
    via_evaluate, via_run = _rows(tmp_path / "evaluate"), _rows(tmp_path / "run")
    pd.testing.assert_frame_equal(via_evaluate, via_run)
    by = via_run.set_index("benchmark")
    assert by.loc["clean", "n"] == 200 and 0.85 < by.loc["clean", "accuracy"] < 0.97
    assert by.loc["attack", "accuracy"] < by.loc["clean", "accuracy"]


def _write(path, config):
    path.write_text(yaml.safe_dump(config))
    return path


def test_nan_weights_give_failed_rows_and_exit_1_on_every_path(tmp_path, capsys):
    checkpoint = _tiny_checkpoint(tmp_path / "nan.safetensors", nan=True)
    rc = main(["evaluate", "--checkpoint", str(checkpoint), "--dataset", "digits", "--limit",
               "20", "--benchmark", "clean,corruption,fgsm", "--corruptions", "fog",
               "--severities", "1", "--out", str(tmp_path / "evaluate"), "--no-progress"])
    assert rc == 1
    assert "FAILED" in capsys.readouterr().out
    config = {"name": "nan", "models": [{"name": "nan", "checkpoint": str(checkpoint)}],
              "datasets": [{"name": "digits", "kind": "digits", "limit": 20}],
              "benchmarks": [{"type": "clean"}, {"type": "attack", "attack": "fgsm",
                                                 "eps": 0.1}]}
    summary = run_job(_write(tmp_path / "nan.yaml", config), tmp_path / "run", progress=False)
    assert summary.exit_code == 1
    for folder in ("evaluate", "run"):
        frame = pd.read_csv(tmp_path / folder / "results.csv")
        assert (frame["status"] == "failed").all() and frame["accuracy"].isna().all()
        assert frame["error"].str.contains("non-finite").all()


def test_evaluate_folder_adds_models_reuses_cells_and_refuses_a_swapped_checkpoint(tmp_path,
                                                                                   capsys):
    out = tmp_path / "out"
    first = _tiny_checkpoint(tmp_path / "first.safetensors", seed=0)
    second = _tiny_checkpoint(tmp_path / "second.safetensors", seed=1)
    common = ["--dataset", "digits", "--limit", "30", "--out", str(out), "--no-progress"]
    assert main(["evaluate", "--checkpoint", str(first), *common]) == 0
    assert main(["evaluate", "--checkpoint", str(second), *common]) == 0
    frame = pd.read_csv(out / "results.csv")
    assert sorted(frame["model"]) == ["first", "second"]
    for name in ("results.parquet", "run.json", "index.json"):
        assert (out / name).is_file()
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(first), *common]) == 0
    assert "1 already done, 0 to run" in capsys.readouterr().out
    # other weights under a name that has results: refused, then replaced on request
    assert main(["evaluate", "--checkpoint", str(second), "--model-name", "first",
                 *common]) == 2
    assert "already holds results of model 'first'" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(second), "--model-name", "first",
                 "--replace", *common]) == 0
    frame = pd.read_csv(out / "results.csv")
    assert len(frame) == 2 and frame["checkpoint_sha256"].nunique() == 1


def test_integers_stay_integers_and_eps_reads_as_a_fraction(tmp_path, capsys):
    checkpoint = _tiny_checkpoint(tmp_path / "tiny.safetensors")
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--dataset", "digits", "--limit",
                 "20", "--benchmark", "pgd,corruption", "--corruptions", "fog", "--severities",
                 "2", "--eps", "8/255", "--steps", "2", "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "8/255" in out and "0.031" not in out
    text = (tmp_path / "o" / "results.csv").read_text()
    frame = pd.read_csv(tmp_path / "o" / "results.csv")
    for column in ("n", "correct", "steps", "severity", "seed"):
        values = frame[column].dropna()
        assert (values == values.round()).all()
    assert ",20,"in text and ",20.0," not in text
    parquet = pd.read_parquet(tmp_path / "o" / "results.parquet")
    assert str(parquet["n"].dtype) == "Int64" and str(parquet["severity"].dtype) == "Int64"
    assert parquet.loc[parquet["benchmark"] == "attack", "eps"].iloc[0] == 8 / 255
    assert all(p.startswith("{") for p in frame["params"])


@pytest.fixture
def toy_attack():
    """An attack defined outside the package: one class plus attacks.register."""
    import attacks

    @attacks.register
    class SignNoise(attacks.Attack):
        """A random corner of the L-inf ball (gradient-free)."""

        name = "sign_noise"
        title = "Sign noise"
        threat = "linf"
        default_eps = 0.1
        default_steps = 1
        strength = 0
        uses_gradients = False
        engines = ("native",)

        def __init__(self, model, eps=default_eps, **options):
            super().__init__(model, **options)
            self.eps = eps

        def hyperparameters(self):
            return {"eps": self.eps}

        def forward(self, images, labels, generator):
            sign = torch.randint(0, 2, images.shape, generator=generator) * 2 - 1
            return torch.clamp(images + self.eps * sign, 0, 1)

    yield SignNoise
    del attacks.ATTACKS["sign_noise"]


def test_toy_attack_runs_through_evaluate_and_run_with_identical_rows(tmp_path, toy_attack):
    checkpoint = _tiny_checkpoint(tmp_path / "tiny.safetensors")
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--dataset", "digits", "--limit",
                 "40", "--benchmark", "sign_noise", "--eps", "0.05,0.3", "--out",
                 str(tmp_path / "evaluate"), "--no-progress"]) == 0
    config = {"name": "toy", "models": [{"name": "tiny", "checkpoint": str(checkpoint)}],
              "datasets": [{"name": "digits", "kind": "digits", "limit": 40}],
              "benchmarks": [{"type": "attack", "attack": "sign_noise", "eps": [0.05, 0.3]}]}
    summary = run_job(_write(tmp_path / "toy.yaml", config), tmp_path / "run", progress=False)
    assert summary.exit_code == 0
    via_evaluate, via_run = _rows(tmp_path / "evaluate"), _rows(tmp_path / "run")
    pd.testing.assert_frame_equal(via_evaluate, via_run)
    assert list(via_run["attack"]) and set(via_run["attack"]) == {"sign_noise"}
    assert sorted(via_run["eps"]) == [0.05, 0.3] and set(via_run["steps"]) == {1}
    # steps do not apply to it: an error, never ignored
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--dataset", "digits",
                 "--benchmark", "sign_noise", "--steps", "5"]) == 2
