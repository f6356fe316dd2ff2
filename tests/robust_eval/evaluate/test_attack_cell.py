"""The attack plug-in of `robust-eval evaluate`, attacks on ConvNorm models, and the two engines
on the real pretrained ResNet-20 (../shared/data)."""
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
from robust_eval.evaluate import cli_names
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


# --------------------------------------------------------------------------- the benchmark type
def test_flags_become_the_config_options_and_fractions_parse(flags):
    raw = flags("pgd", "--eps 2/255,4/255,0.03 --steps 7 --alpha 1/255 --restarts 2 --seed 3 "
                       "--engine torchattacks".split())
    assert raw == {"type": "attack", "attack": "pgd", "seed": 3, "eps": [2 / 255, 4 / 255, 0.03],
                   "steps": 7, "alpha": 1 / 255, "restarts": 2, "engine": "torchattacks"}
    assert flags("fgsm", []) == {"type": "attack", "attack": "fgsm", "seed": 0}
    assert flags("autoattack", "--aa-version custom --aa-parts apgd-ce --aa-n-iter 10".split()) \
        == {"type": "attack", "attack": "autoattack", "seed": 0, "version": "custom",
            "parts": "apgd-ce", "n_iter": 10}
    assert set(cli_names()) >= {"fgsm", "pgd", "pgd_l2", "autoattack"}


@pytest.mark.parametrize("argv, message", [
    ("--eps 8/0", "not a number or fraction"),
    ("--eps __import__('os')", "not a number or fraction"),
    ("--eps 1/2/3", "not a number or fraction"),
    ("--eps=-1/255", "must be a finite number >= 0"),
    ("--eps inf", "must be a finite number"),
    ("--eps ,", "at least one value"),
    ("--steps 2.5", "invalid int value"),
    ("--alpha x", "not a number"),
])
def test_bad_flags_are_clear_errors(argv, message, capsys):
    from robust_eval.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--checkpoint", "m.pt", "--dataset", "digits",
                                   *argv.split()])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("raw, field, message", [
    ({"attack": "pgd", "steps": 0}, "steps", "must be >= 1"),
    ({"attack": "pgd", "restarts": 0}, "restarts", "must be >= 1"),
    ({"attack": "pgd", "engine": "foolbox"}, "engine", "foolbox"),
    ({"attack": "fgsm", "steps": 3}, "steps", "does not apply to attack 'fgsm'"),
    ({"attack": "autoattack", "engine": "native"}, "engine", "does not apply"),
    ({"attack": "pgd", "version": "custom"}, "version", "does not apply"),
    ({"attack": "pdg"}, "attack", "did you mean 'pgd'"),
])
def test_options_that_do_not_apply_are_errors_naming_the_field(raw, field, message):
    from robust_eval.jobs import ConfigError, parse_config

    config = {"models": [{"name": "m", "checkpoint": "m.pt"}],
              "datasets": [{"name": "digits"}], "benchmarks": [dict(raw, type="attack")]}
    with pytest.raises(ConfigError, match=rf"benchmarks\[0\]\.{field}: .*{message}"):
        parse_config(config, source="job.yaml")


def tiny_data(n=12):
    from robust_eval.data import LabeledImages

    g = torch.Generator().manual_seed(0)
    return LabeledImages(torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8),
                         torch.randint(0, 10, (n,), generator=g), [str(i) for i in range(10)],
                         "synthetic")


def test_attack_cells_give_schema_rows_with_outcomes(measure, flags):
    from robust_eval.models import create_model

    model = create_model("tiny_cnn", norm="bn").eval()
    raw = flags("pgd", "--eps 2/255,8/255 --steps 2 --seed 4".split())
    rows = measure("attack", model, tiny_data(), raw)
    frame = to_frame(rows)
    assert set(COLUMNS) <= set(frame.columns) and len(frame) == 2
    assert frame[["attack", "eps"]].values.tolist() == [["pgd", 2 / 255], ["pgd", 8 / 255]]
    assert (frame["benchmark"] == "attack").all() and (frame["seed"] == 4).all()
    assert frame["steps"].tolist() == [2, 2]
    assert ((frame["ci_low"] <= frame["accuracy"]) & (frame["accuracy"] <= frame["ci_high"])).all()
    assert json.loads(frame["params"].iloc[0])["engine"] == "native"
    fgsm = measure("attack", model, tiny_data(), flags("fgsm", ["--eps", "2/255,8/255"]))
    assert [r["steps"] for r in fgsm] == [1, 1]
    direct = plugin.run_attack_cells(model, tiny_data().images, tiny_data().labels,
                                     attacks="fgsm", eps_list=[2 / 255, 8 / 255])
    assert [r["correct"] for r in fgsm] == [r["correct"] for r in direct]


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
