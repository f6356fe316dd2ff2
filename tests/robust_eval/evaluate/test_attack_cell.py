"""The attack plug-in of `robust-eval evaluate`, attacks on ConvNorm models, and the two engines
on the real pretrained ResNet-20 (../shared/data)."""
import argparse
import copy
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from attacks import ATTACKS, FGSM, PGD, AutoAttack
from attacks.sweep import eps_sweep
from robust_eval.evaluate import attack as plugin
from robust_eval.registry import Registry
from robust_eval.schema import COLUMNS, to_frame


def convnorm_model():
    from robust_eval.nn import ConvNorm2d

    torch.manual_seed(0)
    model = nn.Sequential(ConvNorm2d(3, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10))
    model.train()
    with torch.no_grad():  # non-trivial running V and BN statistics
        for _ in range(3):
            model(torch.rand(8, 3, 8, 8))
    return model


@pytest.mark.parametrize("make", [
    lambda m: PGD(m, steps=3, seed=1),
    lambda m: PGD(m, steps=3, seed=1, engine="torchattacks"),
    lambda m: FGSM(m, amp="bf16", channels_last=True),
    lambda m: AutoAttack(m, eps=0.1, version="custom", attacks=["apgd-ce"], n_iter=3),
])
def test_attacks_leave_convnorm_and_bn_state_bit_identical(make):
    model = convnorm_model()
    assert any(name.endswith("running_V") for name, _ in model.named_buffers())
    before = copy.deepcopy(model.state_dict())
    modes = [m.training for m in model.modules()]
    g = torch.Generator().manual_seed(0)
    images, labels = torch.rand(6, 3, 8, 8, generator=g), torch.randint(0, 10, (6,), generator=g)
    make(model)(images, labels)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), [
        k for k in before if not torch.equal(before[k], after[k])]
    assert [m.training for m in model.modules()] == modes and model.training


def test_hub_registry_view_of_attacks():
    registry = Registry.view("attack", ATTACKS)
    assert registry.get("pgd") is PGD
    assert registry.list("pgd*") == ["pgd", "pgd_l2"]
    with pytest.raises(KeyError, match="did you mean 'pgd'"):
        registry.get("pdg")


# --------------------------------------------------------------------------- CLI plug-in
def parser_with_plugin(existing_seed=False):
    parser = argparse.ArgumentParser()
    if existing_seed:
        parser.add_argument("--seed", type=int, default=5)
    plugin.add_arguments(parser)
    return parser


def test_flags_and_fractions():
    args = parser_with_plugin().parse_args(
        "--eps 2/255,4/255,0.03 --steps 7 --alpha 1/255 --restarts 2 --seed 3 "
        "--engine torchattacks".split())
    assert args.eps == [2 / 255, 4 / 255, 0.03]
    assert (args.steps, args.alpha, args.restarts, args.seed, args.engine) == (
        7, 1 / 255, 2, 3, "torchattacks")
    defaults = parser_with_plugin().parse_args([])
    assert (defaults.eps, defaults.steps, defaults.alpha, defaults.restarts, defaults.seed,
            defaults.engine) == (None, 10, None, 1, 0, "native")
    assert parser_with_plugin(existing_seed=True).parse_args([]).seed == 5  # shared, no clash
    assert plugin.BENCHMARK_NAMES == ("fgsm", "pgd", "pgd_l2", "autoattack")


@pytest.mark.parametrize("argv, message", [
    ("--eps 8/0", "not a number or fraction"),
    ("--eps __import__('os')", "not a number or fraction"),
    ("--eps 1/2/3", "not a number or fraction"),
    ("--eps=-1/255", "must be a finite number >= 0"),
    ("--eps inf", "must be a finite number"),
    ("--eps ,", "at least one value"),
    ("--steps 0", "must be >= 1"),
    ("--steps 2.5", "not an integer"),
    ("--restarts 0", "must be >= 1"),
    ("--alpha x", "not a number"),
    ("--engine foolbox", "invalid choice"),
])
def test_bad_flags_are_clear_errors(argv, message, capsys):
    with pytest.raises(SystemExit):
        parser_with_plugin().parse_args(argv.split())
    assert message in capsys.readouterr().err


def test_requested_benchmarks_filters_to_this_plugin():
    assert plugin.requested_benchmarks("clean,fgsm,pgd") == ["fgsm", "pgd"]
    assert plugin.requested_benchmarks(["clean", "pgd_l2,autoattack"]) == ["pgd_l2",
                                                                          "autoattack"]
    assert plugin.requested_benchmarks(None) == []


def tiny_data(n=12):
    g = torch.Generator().manual_seed(0)
    return SimpleNamespace(images=torch.randint(0, 256, (n, 3, 8, 8), generator=g,
                                                dtype=torch.uint8),
                           labels=torch.randint(0, 10, (n,), generator=g), name="synthetic")


def test_run_from_args_returns_schema_rows():
    from robust_eval.models import create_model

    model = create_model("tiny_cnn", norm="bn").eval()
    args = parser_with_plugin().parse_args("--eps 2/255,8/255 --steps 2 --seed 4".split())
    args.benchmark = "clean,fgsm,pgd"
    base = {"model": "tiny", "checkpoint_sha256": "abc", "arch": "tiny_cnn", "norm": "bn",
            "dataset": "synthetic", "device": "cpu"}
    rows = plugin.run_from_args(model, tiny_data(), args, base, "cpu")
    frame = to_frame(rows)
    assert set(COLUMNS) <= set(frame.columns)
    assert len(frame) == 4
    assert frame[["attack", "eps"]].values.tolist() == [["fgsm", 2 / 255], ["fgsm", 8 / 255],
                                                        ["pgd", 2 / 255], ["pgd", 8 / 255]]
    assert (frame["benchmark"] == "attack").all() and (frame["model"] == "tiny").all()
    assert (frame["seed"] == 4).all() and frame["steps"].tolist() == [1, 1, 2, 2]
    assert ((frame["ci_low"] <= frame["accuracy"]) & (frame["accuracy"] <= frame["ci_high"])).all()
    assert frame["warnings"].map(lambda w: isinstance(w, str)).all()
    assert json.loads(frame["params"].iloc[2])["engine"] == "native"
    assert set(COLUMNS) <= set(frame.columns)
    # one benchmark at a time, as a dispatcher calling per --benchmark value would
    only = plugin.run_from_args(model, tiny_data(), args, base, "cpu", benchmark="fgsm")
    assert [r["attack"] for r in only] == ["fgsm", "fgsm"]
    assert [r["correct"] for r in only] == frame["correct"].tolist()[:2]


def test_plain_function_defaults_and_cheap_autoattack():
    from robust_eval.models import create_model

    model = create_model("tiny_cnn", norm="bn").eval()
    data = tiny_data(8)
    rows = plugin.run_attack_cells(
        model, data.images, data.labels, attacks=["pgd_l2", "autoattack"], steps=2,
        options={"autoattack": {"version": "custom", "attacks": ["apgd-ce"], "n_iter": 2}},
        base={"model": "tiny"})
    assert [(r["attack"], r["threat"], r["eps"]) for r in rows] == [
        ("pgd_l2", "l2", 0.5), ("autoattack", "linf", 8 / 255)]
    with pytest.raises(ValueError, match="handles"):
        plugin.run_from_args(model, data, SimpleNamespace(), {}, "cpu", benchmark="clean")


# --------------------------------------------------------------------------- real model
@pytest.mark.slow
@pytest.mark.shared
def test_engines_agree_on_the_pretrained_resnet20(he2016_checkpoints, cifar10_test_npz):
    """Native vs torchattacks on 256 real CIFAR-10 test images, FGSM and PGD-10 at 8/255: the
    robust accuracy agrees within 0.5 pp (in fact exactly: the fp32 adversarial images are
    bit-identical, checked on 32 of them).
    256 images, not 1,000: on 2 shared cores each fwd+bwd pass counts."""
    from robust_eval.checkpoints import load_checkpoint

    model = load_checkpoint(he2016_checkpoints / "resnet20-12fca82f.th", arch="resnet20",
                            mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    with np.load(cifar10_test_npz) as npz:
        images = torch.from_numpy(npz["x"][:256]).permute(0, 3, 1, 2).contiguous()
        labels = torch.from_numpy(npz["y"][:256]).long()
    native = eps_sweep(model, images, labels, attack="fgsm,pgd", eps_list=[8 / 255], steps=10,
                       seed=0, batch_size=256).set_index("attack")
    clean = json.loads(native["params"].iloc[0])["clean_correct"]
    assert 0.86 <= clean / 256 <= 0.97  # published 91.73 % on all 10,000
    assert native.loc["pgd", "correct"] < native.loc["fgsm", "correct"] < clean * 0.5
    assert (native["warnings"] == "").all(), native["warnings"].tolist()
    x = images.float() / 255
    for name, attack in (("fgsm", FGSM(model, engine="torchattacks")),
                         ("pgd", PGD(model, steps=10, seed=0, engine="torchattacks"))):
        reference = attack(x, labels)
        with torch.no_grad():
            accuracy = (model(reference).argmax(1) == labels).float().mean().item()
        assert abs(accuracy - native.loc[name, "accuracy"]) <= 0.005, (name, accuracy)
        native_attack = type(attack)(model, **attack.hyperparameters(), seed=0)
        assert torch.equal(native_attack(x[:32], labels[:32]), attack(x[:32], labels[:32]))


def test_the_evaluate_command_carries_the_attack_flags():
    from robust_eval.cli import build_parser

    args = build_parser().parse_args(
        "evaluate --checkpoint m.pt --dataset digits --benchmark clean,pgd --eps 4/255,8/255 "
        "--steps 20 --alpha 1/255 --restarts 3 --seed 7 --engine torchattacks".split())
    assert (args.eps, args.steps, args.alpha, args.restarts, args.seed, args.engine) == (
        [4 / 255, 8 / 255], 20, 1 / 255, 3, 7, "torchattacks")
