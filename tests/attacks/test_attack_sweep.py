"""eps_sweep: the long-format frame, its numbers and its gradient-masking warnings;
AutoAttack through pyautoattack."""
import json

import pandas as pd
import pytest
import torch
from torch import nn

from attacks import AttackError, AutoAttack
from attacks.sweep import SWEEP_COLUMNS, eps_sweep

SCHEMA_ATTACK_COLUMNS = ["benchmark", "attack", "threat", "eps", "steps", "restarts", "seed", "n",
                         "correct", "accuracy"]


def accuracy_of(model, images, labels):
    with torch.no_grad():
        return int((model(images).argmax(1) == labels).sum())


def test_sweep_frame_on_an_accurate_model(trained):
    model, (images, labels) = trained
    eps_list = [0, 0.1, 0.125, 0.15]
    frame = eps_sweep(model, images, labels, attack="fgsm,pgd", eps_list=eps_list, steps=10,
                      seed=3, batch_size=40)
    assert list(frame.columns) == SWEEP_COLUMNS
    assert set(SCHEMA_ATTACK_COLUMNS) <= set(frame.columns)
    assert len(frame) == 2 * len(eps_list)
    assert set(frame["benchmark"]) == {"attack"} and set(frame["threat"]) == {"linf"}
    assert (frame["n"] == 64).all() and (frame["seed"] == 3).all()
    assert (frame["accuracy"] == frame["correct"] / 64).all()
    assert frame.set_index("attack").loc["fgsm", "steps"].eq(1).all()
    assert frame.set_index("attack").loc["pgd", "steps"].eq(10).all()
    clean = accuracy_of(model, images, labels)
    assert clean >= 62
    for name in ("fgsm", "pgd"):
        rows = frame[frame.attack == name].sort_values("eps")
        assert rows["correct"].iloc[0] == clean  # eps = 0 is the clean point
        assert rows["correct"].is_monotonic_decreasing
        assert rows["correct"].iloc[-1] < clean / 2  # the attack really works
    pgd = frame[frame.attack == "pgd"].set_index("eps")["correct"]
    fgsm = frame[frame.attack == "fgsm"].set_index("eps")["correct"]
    assert (pgd <= fgsm).all() and (pgd < fgsm).any()
    assert (frame["warnings"] == "").all(), frame["warnings"].tolist()
    params = json.loads(frame["params"].iloc[-1])
    assert params["clean_correct"] == clean and params["engine"] == "native"
    assert params["alpha"] == pytest.approx(0.15 / 4) and "PGD(" in params["attack_repr"]


def test_sweep_numbers_are_the_models_predictions_on_the_attack_output(trained):
    model, (images, labels) = trained
    frame = eps_sweep(model, images, labels, attack="pgd", eps_list=[0.12], steps=5, seed=1,
                      batch_size=64)
    from attacks import PGD

    adv = PGD(model, eps=0.12, steps=5, seed=1)(images, labels)  # batch 0 uses the seed itself
    assert frame["correct"].iloc[0] == accuracy_of(model, adv, labels)


def test_engines_give_the_same_sweep(trained):
    model, (images, labels) = trained
    kwargs = dict(attack=["fgsm", "pgd", "pgd_l2"], eps_list=[0.12], steps=4, seed=2,
                  batch_size=24)
    native = eps_sweep(model, images, labels, **kwargs)
    reference = eps_sweep(model, images, labels, engine="torchattacks", **kwargs)
    assert native["correct"].tolist() == reference["correct"].tolist()
    assert native["threat"].tolist() == ["linf", "linf", "l2"]


def test_uint8_images_equal_their_float_version(trained):
    model, (images, labels) = trained
    pixels = (images * 255).round().to(torch.uint8)
    a = eps_sweep(model, pixels, labels, attack="pgd", eps_list=[0.12], steps=3)
    b = eps_sweep(model, pixels.float() / 255, labels, attack="pgd", eps_list=[0.12], steps=3)
    assert a["correct"].tolist() == b["correct"].tolist()


class OnGridDetector(nn.Module):
    """Gradient masking in a box: right only off the 1/255 pixel grid, zero gradient everywhere.
    Clean images sit on the grid, so a random start 'helps' and FGSM (zero step) does not."""

    def forward(self, x):
        off_grid = (x * 255 - torch.round(x * 255)).abs().flatten(1).amax(1) > 1e-3
        score = off_grid.float().detach() * 10 + 0 * x.flatten(1).sum(1)
        return torch.stack([score, torch.zeros_like(score) + 5], 1)


def test_masked_model_raises_every_warning():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.zeros(16, dtype=torch.long)
    frame = eps_sweep(OnGridDetector(), images, labels, attack="fgsm,pgd", eps_list=[4 / 255],
                      steps=3)
    fgsm, pgd = frame.set_index("attack")["warnings"].loc[["fgsm", "pgd"]]
    assert frame.set_index("attack")["correct"].to_dict() == {"fgsm": 0, "pgd": 16}
    assert "robust accuracy 16/16 above clean accuracy 0/16" in pgd
    assert "pgd accuracy 16/16 above fgsm 0/16 at the same eps" in pgd
    assert "all-zero input gradients for 16/16 clean images" in pgd
    assert "all-zero input gradients for 16/16 examples during the attack" in pgd
    assert "did not increase" in pgd
    assert "not above the clean loss" in fgsm


def test_pgd_alone_is_still_checked_against_a_hidden_fgsm():
    images = torch.full((4, 3, 8, 8), 128 / 255)
    labels = torch.zeros(4, dtype=torch.long)
    frame = eps_sweep(OnGridDetector(), images, labels, attack="pgd", eps_list=[0.01], steps=1)
    assert list(frame["attack"]) == ["pgd"]
    assert "pgd accuracy 4/4 above fgsm 0/4" in frame["warnings"].iloc[0]
    frame = eps_sweep(OnGridDetector(), images, labels, attack="pgd", eps_list=[0.01], steps=1,
                      reference_fgsm=False)
    assert "above fgsm" not in frame["warnings"].iloc[0]


def test_warnings_are_logged(caplog):
    images = torch.full((4, 3, 8, 8), 128 / 255)
    with caplog.at_level("WARNING", logger="attacks.sweep"):
        eps_sweep(OnGridDetector(), images, torch.zeros(4, dtype=torch.long), attack="pgd",
                  eps_list=[0.01], steps=2)
    assert any("above clean accuracy" in r.getMessage() for r in caplog.records)


def test_accuracy_rising_with_eps_is_flagged():
    images = torch.full((4, 3, 8, 8), 128 / 255)
    frame = eps_sweep(OnGridDetector(), images, torch.zeros(4, dtype=torch.long), attack="pgd",
                      eps_list=[0, 0.01], steps=1)
    assert "above the 0/4 at the smaller eps 0" in frame["warnings"].iloc[1]


@pytest.mark.parametrize("kwargs, match", [
    ({"attack": "cw"}, "unknown attack 'cw'"),
    ({"attack": ""}, "no attack named"),
    ({"attack": "pgd,pgd"}, "repeat"),
    ({"eps_list": []}, "eps_list is empty"),
    ({"eps_list": ["8/255"]}, "eps values must be numbers"),
    ({"eps_list": [-0.1]}, "out of range"),
    ({"eps_list": [2.0]}, "out of range"),
    ({"steps": 0}, "steps must be an integer >= 1"),
    ({"batch_size": 0}, "batch_size"),
    ({"options": {"fgsm": {}}}, "options given for attacks not in the sweep"),
])
def test_bad_sweep_arguments(kwargs, match, trained):
    model, (images, labels) = trained
    args = dict(attack="pgd", eps_list=[0.1])
    args.update(kwargs)
    with pytest.raises(AttackError, match=match):
        eps_sweep(model, images[:4], labels[:4], **args)


def test_bad_sweep_data(trained):
    model, (images, labels) = trained
    with pytest.raises(AttackError, match=r"labels must lie in \[0, 3\]"):
        eps_sweep(model, images[:4], labels[:4] + 4, attack="fgsm", eps_list=[0.1])
    with pytest.raises(AttackError, match=r"\[0, 1\]"):
        eps_sweep(model, images[:4] * 3, labels[:4], attack="fgsm", eps_list=[0.1])
    with pytest.raises(AttackError, match="NaN or inf logits"):
        eps_sweep(nn.Sequential(model, nn.Softplus(beta=float("nan"))), images[:4], labels[:4],
                  attack="fgsm", eps_list=[0.1])


# --------------------------------------------------------------------------- AutoAttack
def test_autoattack_cheap_subset_is_seeded_and_valid(trained):
    model, (images, labels) = trained
    images, labels = images[:24], labels[:24]
    state = torch.get_rng_state()
    attack = AutoAttack(model, eps=0.12, version="custom", attacks=["apgd-ce"], n_iter=5,
                        seed=3)
    adv = attack(images, labels)
    assert torch.equal(state, torch.get_rng_state())  # pyautoattack re-seeds; we restore
    assert torch.equal(adv, AutoAttack(model, eps=0.12, version="custom", attacks=["apgd-ce"],
                                       n_iter=5, seed=3)(images, labels))
    assert (adv - images).abs().max() <= 0.12 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    robust = accuracy_of(model, adv, labels)
    assert robust < accuracy_of(model, images, labels)
    assert "n_iter=5" in repr(attack) and "attacks=('apgd-ce',)" in repr(attack)


def test_autoattack_in_a_sweep_with_cheap_options(trained):
    model, (images, labels) = trained
    frame = eps_sweep(model, images[:24], labels[:24], attack="pgd,autoattack", eps_list=[0.13],
                      steps=10, seed=0, options={"autoattack": {
                          "version": "custom", "attacks": ["apgd-ce", "apgd-t"], "n_iter": 5}})
    row = frame.set_index("attack").loc["autoattack"]
    assert pd.isna(row["steps"]) and row["threat"] == "linf"  # n_iter is not a step count
    params = json.loads(row["params"])
    assert (params["version"], params["attacks"], params["n_iter"]) == (
        "custom", ["apgd-ce", "apgd-t"], 5)
    assert params["label"] == "AutoAttack (custom: apgd-ce, apgd-t, n_iter 5)"
    assert row["correct"] <= frame.set_index("attack").loc["pgd", "correct"] + 2


def test_autoattack_standard_version_runs(trained):
    """The published configuration; on an easy model APGD-CE fools everything at once."""
    model, (images, labels) = trained
    attack = AutoAttack(model, eps=0.3, seed=0)
    adv = attack(images[:6], labels[:6])
    assert accuracy_of(model, adv, labels[:6]) == 0
    assert "version=standard" in repr(attack)


def test_autoattack_refuses_unsafe_configurations(trained):
    model, _ = trained
    with pytest.raises(AttackError, match="explicit integer seed"):
        AutoAttack(model, seed=None)
    with pytest.raises(AttackError, match="version 'standard' fixes parts"):
        AutoAttack(model, attacks=["apgd-ce"])
    with pytest.raises(AttackError, match="version 'custom' needs parts"):
        AutoAttack(model, version="custom")
    with pytest.raises(AttackError, match="unknown autoattack part"):
        AutoAttack(model, version="custom", attacks=["pgd"])
    with pytest.raises(AttackError, match=r"threat \(norm\) must be one of linf, l2, l1"):
        AutoAttack(model, norm="Linf2")
    with pytest.raises(AttackError, match="out of range"):
        AutoAttack(model, eps=2.0)
    with pytest.raises(AttackError, match="version 'standard' fixes restarts at 1"):
        AutoAttack(model, restarts=3)
    with pytest.raises(AttackError, match="version 'standard' fixes n_iter at 100"):
        AutoAttack(model, n_iter=10)
    assert AutoAttack(model, version="plus").restarts == 5
    with pytest.raises(AttackError, match="float32 model"):
        AutoAttack(nn.Linear(3, 2).double())(torch.rand(2, 3), torch.zeros(2, dtype=torch.long))
