"""FGSM / PGD / PGD-L2: engines agree, the threat model holds at every step, the model is
left exactly as it was, and bad input is refused."""
import copy

import pytest
import torch
from torch import nn

import attacks
from attacks import ATTACKS, FGSM, PGD, PGDL2, AttackError, restart_seed

GRADIENT_ATTACKS = [("fgsm", {}), ("pgd", {"steps": 4}), ("pgd_l2", {"steps": 4, "eps": 0.3})]


def make(name, model, **kwargs):
    params = dict(dict(GRADIENT_ATTACKS)[name])
    params.update(kwargs)
    return ATTACKS[name](model, **params)


class Recorder(nn.Module):
    """Wraps a model and remembers every input it saw and the mode it was in."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.inputs, self.modes = [], []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        self.modes.append([m.training for m in self.inner.modules()])
        return self.inner(x)


def test_registry_lists_the_attacks():
    assert set(ATTACKS) == {"fgsm", "pgd", "pgd_l2", "autoattack"}
    assert ATTACKS["pgd"] is PGD and attacks.sweep.eps_sweep


@pytest.mark.parametrize("name", ["fgsm", "pgd", "pgd_l2"])
@pytest.mark.parametrize("targeted", [False, True])
def test_native_matches_torchattacks_bit_for_bit(name, targeted, bn_net, batch):
    images, labels = batch
    if targeted:
        labels = (labels + 3) % 10
    native = make(name, bn_net, seed=11, targeted=targeted)(images, labels)
    reference = make(name, bn_net, seed=11, targeted=targeted, engine="torchattacks")(images,
                                                                                      labels)
    assert native.dtype == torch.float32
    assert torch.equal(native, reference)
    assert not torch.equal(native, images)


def test_same_seed_same_images_other_seed_other_start(bn_net, batch):
    a = PGD(bn_net, steps=2, seed=1)(*batch)
    assert torch.equal(a, PGD(bn_net, steps=2, seed=1)(*batch))
    assert not torch.equal(a, PGD(bn_net, steps=2, seed=2)(*batch))


@pytest.mark.parametrize("engine", ["native", "torchattacks"])
@pytest.mark.parametrize("name", ["fgsm", "pgd", "pgd_l2"])
def test_every_iterate_stays_in_the_ball_and_in_range(name, engine, bn_net, batch):
    images, labels = batch
    images = images * 0.9 + 0.05
    images[0, 0, 0, 0], images[1, 1, 1, 1] = 0.0, 1.0  # pixels on the [0, 1] boundary
    recorder = Recorder(bn_net)
    attack = make(name, recorder, eps=0.05 if name != "pgd_l2" else 0.3, engine=engine,
                  **({"alpha": 0.04} if name == "pgd" else {}))
    adv = attack(images, labels)
    seen = [x for x in recorder.inputs if x.shape == images.shape] + [adv]
    assert len(seen) >= (2 if name == "fgsm" else 5)
    for x in seen:
        assert x.min() >= 0 and x.max() <= 1
        delta = (x - images).flatten(1)
        if name == "pgd_l2":
            assert delta.norm(dim=1).max() <= 0.3 * (1 + 1e-6)
        else:
            assert delta.abs().max() <= 0.05 + 1e-7


@pytest.mark.parametrize("engine", ["native", "torchattacks"])
def test_eval_mode_during_attack_and_each_module_mode_restored(engine, bn_net, batch):
    recorder = Recorder(bn_net)
    recorder.train()
    bn_net.drop.eval()  # a mixed state the attack must give back exactly
    before_modes = [m.training for m in recorder.modules()]
    before_state = copy.deepcopy(recorder.state_dict())
    PGD(recorder, steps=3, engine=engine)(*batch)
    assert recorder.modes and all(not any(flags) for flags in recorder.modes)
    assert [m.training for m in recorder.modules()] == before_modes
    after = recorder.state_dict()
    assert all(torch.equal(before_state[k], after[k]) for k in before_state)  # BN stats too


def test_parameter_gradients_untouched(bn_net, batch):
    PGD(bn_net, steps=2)(*batch)
    assert all(p.grad is None for p in bn_net.parameters())


def test_labels_become_long_and_model_dtype_is_respected(bn_net, batch):
    images, labels = batch
    model64 = copy.deepcopy(bn_net).double()
    adv = PGD(model64, steps=2, random_start=False)(images, labels.int())
    assert adv.dtype == torch.float64
    adv32 = PGD(bn_net, steps=2, random_start=False)(images.double(), labels.to(torch.int16))
    assert adv32.dtype == torch.float32 and adv32.device == images.device
    assert (adv - images.double()).abs().max() <= 8 / 255 + 1e-12
    # same algorithm in two precisions: nearly every pixel lands on the same value
    same = torch.isclose(adv.float(), adv32, atol=1e-6).float().mean()
    assert same > 0.95, same


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_models_cuda_device(bn_net, batch):
    model = bn_net.cuda()
    adv = PGD(model, steps=2)(*batch)
    assert adv.is_cuda


def test_restarts_keep_the_per_example_worst_case(trained):
    model, (images, labels) = trained
    eps = 0.125
    first = PGD(model, eps=eps, alpha=eps / 2, steps=2, seed=5)(images, labels)
    best = PGD(model, eps=eps, alpha=eps / 2, steps=2, seed=5, restarts=4)(images, labels)
    with torch.no_grad():
        fooled_first = model(first).argmax(1) != labels
        fooled_best = model(best).argmax(1) != labels
        loss_first = nn.functional.cross_entropy(model(first), labels, reduction="none")
        loss_best = nn.functional.cross_entropy(model(best), labels, reduction="none")
    assert fooled_first.any() and (~fooled_first).any()
    assert bool((fooled_best | ~fooled_first).all())  # fooled once -> stays fooled
    kept = ~fooled_best
    assert bool((loss_best[kept] >= loss_first[kept] - 1e-6).all())
    assert fooled_best.sum() >= fooled_first.sum()
    assert (best - images).abs().max() <= eps + 1e-7
    assert restart_seed(5, 0) == 5 and restart_seed(5, 1) != restart_seed(5, 2)


def test_restarts_engines_agree(trained):
    model, (images, labels) = trained
    a = PGD(model, eps=0.125, alpha=0.06, steps=2, restarts=3, seed=9)(images, labels)
    b = PGD(model, eps=0.125, alpha=0.06, steps=2, restarts=3, seed=9,
            engine="torchattacks")(images, labels)
    assert torch.equal(a, b)


def test_targeted_pgd_reaches_the_target(trained):
    model, (images, labels) = trained
    targets = (labels + 1) % 4
    adv = PGD(model, eps=0.5, alpha=0.05, steps=20, targeted=True)(images, targets)
    with torch.no_grad():
        hit = (model(adv).argmax(1) == targets).float().mean()
    assert hit >= 0.9


def test_repr_prints_every_hyper_parameter(bn_net):
    text = repr(PGD(bn_net, eps=8 / 255, alpha=2 / 255, steps=7, restarts=2, seed=3))
    for part in ("PGD(", "model_name=SmallBNNet", "device=cpu", "attack_mode=default",
                 f"eps={8 / 255}", f"alpha={2 / 255}", "steps=7", "random_start=True",
                 "restarts=2", "seed=3", "engine=native", "amp=None", "channels_last=False",
                 "compile=False"):
        assert part in text, (part, text)
    assert "eps_for_division" in repr(PGDL2(bn_net))
    assert repr(FGSM(bn_net, engine="torchattacks")).startswith("FGSM(model_name=SmallBNNet")


def test_torchattacks_engine_leaves_global_rng_alone(bn_net, batch):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    PGD(bn_net, steps=1, engine="torchattacks", seed=4)(*batch)
    assert torch.equal(state, torch.get_rng_state())


def test_default_alpha_is_a_quarter_of_eps(bn_net):
    assert PGD(bn_net, eps=8 / 255).alpha == pytest.approx(2 / 255)
    assert PGDL2(bn_net, eps=1.0).alpha == pytest.approx(0.25)


def test_bf16_autocast_and_channels_last_keep_the_threat_model(trained):
    model, (images, labels) = trained
    fp32 = PGD(model, eps=0.12, steps=10)(images, labels)
    fast = PGD(model, eps=0.12, steps=10, amp="bf16", channels_last=True)(images, labels)
    assert fast.dtype == torch.float32 and fast.is_contiguous()
    assert (fast - images).abs().max() <= 0.12 + 1e-7 and 0 <= fast.min() and fast.max() <= 1
    with torch.no_grad():
        acc32 = (model(fp32).argmax(1) == labels).float().mean()
        acc16 = (model(fast).argmax(1) == labels).float().mean()
    assert abs(float(acc32 - acc16)) <= 0.1


def test_compiled_native_engine_matches_eager(bn_net, batch):
    eager = PGD(bn_net, steps=2)(*batch)
    compiled = PGD(bn_net, steps=2, compile="eager")(*batch)
    assert torch.allclose(eager, compiled, atol=1e-6)


def test_zero_and_nan_gradients_are_recorded(batch):
    images, labels = batch

    class NaNGrad(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(192, 10)

        def forward(self, x):  # finite output, NaN input gradient (0 * inf)
            return self.linear(x.flatten(1)) + torch.sqrt(x * 0).sum((1, 2, 3))[:, None]

    attack = PGD(NaNGrad(), steps=2)
    adv = attack(images, labels)
    assert torch.isfinite(adv).all()
    assert attack.last_stats.nan_grad_examples == len(images)
    assert any("NaN input gradients" in w for w in attack.last_stats.warnings())

    class Flat(nn.Module):  # depends on x only through round(): zero gradient everywhere
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(192, 10)

        def forward(self, x):
            return self.linear(torch.round(x).flatten(1))

    attack = PGD(Flat(), steps=3)
    attack(images, labels)
    notes = attack.last_stats.warnings()
    assert attack.last_stats.zero_grad_examples == len(images)
    assert any("all-zero input gradients" in w for w in notes)
    assert any("did not increase" in w for w in notes)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, match", [
    ({"eps": -0.1}, "eps=-0.1 is out of range"),
    ({"eps": 1.5}, "eps=1.5 is out of range"),
    ({"eps": float("nan")}, "eps=nan is out of range"),
    ({"eps": "8/255"}, "eps must be a number"),
    ({"steps": 0}, "steps must be an integer >= 1"),
    ({"steps": 2.5}, "steps must be an integer"),
    ({"steps": True}, "steps must be an integer"),
    ({"restarts": 0}, "restarts must be an integer >= 1"),
    ({"alpha": 0.0}, "alpha=0.0 is out of range"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"engine": "foolbox"}, "unknown engine 'foolbox'"),
    ({"amp": "int8"}, "amp must be one of"),
    ({"engine": "torchattacks", "amp": "bf16"}, "native engine only"),
])
def test_bad_hyper_parameters_are_refused(kwargs, match, bn_net):
    with pytest.raises(AttackError, match=match):
        PGD(bn_net, **kwargs)


def test_l2_eps_may_exceed_one_but_not_be_negative(bn_net):
    assert PGDL2(bn_net, eps=2.0).eps == 2.0
    with pytest.raises(AttackError, match="out of range"):
        PGDL2(bn_net, eps=-1.0)


@pytest.mark.parametrize("engine", ["native", "torchattacks"])
def test_bad_images_and_labels_are_refused(engine, bn_net, batch):
    images, labels = batch
    attack = PGD(bn_net, steps=1, engine=engine)
    cases = [
        (images * 2, labels, r"images must lie in \[0, 1\] but span"),
        (images - 0.5, labels, r"images must lie in \[0, 1\]"),
        (images.masked_fill(images > 0.9, float("nan")), labels, "NaN or inf"),
        ((images * 255).to(torch.uint8), labels, "float tensor in \\[0, 1\\].*255"),
        (images, labels.float(), "integer class indices"),
        (images, labels[:-1], r"labels must have shape \(12,\)"),
        (images, labels + 10, r"labels must lie in \[0, 9\]"),
        (images, labels - 20, r"labels must lie in"),
        (images[:0], labels[:0], "non-empty batch"),
    ]
    for x, y, match in cases:
        with pytest.raises(AttackError, match=match):
            attack(x, y)
    assert attack(images, labels).shape == images.shape  # the attack still works


@pytest.mark.parametrize("engine", ["native", "torchattacks"])
def test_models_with_wrong_outputs_are_refused(engine, batch):
    images, labels = batch

    class Bad(nn.Module):
        def __init__(self, output):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(()))
            self.output = output

        def forward(self, x):
            return self.output(x) * self.weight

    wrong = {
        "flat": (lambda x: x.flatten(1).sum(1), r"logits of shape \(12,\)"),
        "batch": (lambda x: x.flatten(1)[:, :10].repeat(2, 1), r"shape \(24, 10\)"),
        "nan": (lambda x: x.flatten(1)[:, :10] * float("nan"), "NaN or inf logits"),
    }
    for output, match in wrong.values():
        with pytest.raises(AttackError, match=match):
            PGD(Bad(output), steps=1, engine=engine)(images, labels)


def test_not_a_module_is_refused():
    with pytest.raises(AttackError, match="nn.Module"):
        PGD(lambda x: x)


def test_eps_zero_returns_the_clean_images(bn_net, batch):
    adv = PGD(bn_net, eps=0)(*batch)
    assert torch.equal(adv, batch[0])
