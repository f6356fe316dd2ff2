"""Attacks describe themselves: class metadata, describe/resolve_options for front ends,
labels, registration of a new attack, and the sweep using the metadata instead of names."""
import json
import re

import pytest
import torch
from torch import nn

import attacks
from attacks import ATTACKS, Attack, AttackError, AutoAttack, describe, register, resolve_options
from attacks.sweep import build_attack, eps_sweep

# name: (class, threat, default_eps, default_steps, strength, uses_gradients, engines, options)
METADATA = {
    "fgsm": ("FGSM", "linf", 8 / 255, 1, 0, True, ["native", "torchattacks"], ["eps", "engine"]),
    "pgd": ("PGD", "linf", 8 / 255, 10, 1, True, ["native", "torchattacks"],
            ["eps", "engine", "steps", "alpha", "restarts"]),
    "pgd_l2": ("PGDL2", "l2", 0.5, 10, 1, True, ["native", "torchattacks"],
               ["eps", "engine", "steps", "alpha", "restarts"]),
    "autoattack": ("AutoAttack", "linf", 8 / 255, None, 2, True, ["pyautoattack"],
                   ["eps", "engine", "threat", "version", "parts", "n_iter", "restarts"]),
}


@pytest.mark.parametrize("name", sorted(METADATA))
def test_each_attack_describes_itself(name):
    info = describe(name)
    keys = ("class", "threat", "default_eps", "default_steps", "strength", "uses_gradients",
            "engines", "options")
    assert tuple(info[k] for k in keys) == METADATA[name]
    cls = ATTACKS[name]
    assert cls.name == name and info["summary"] and "\n" not in info["summary"]
    assert info["choices"]["engine"] == info["engines"]
    assert info["defaults"] == resolve_options(name)
    json.dumps(info)  # plain values: a dry run can print it


def test_strength_orders_fgsm_pgd_autoattack():
    assert ATTACKS["fgsm"].strength < ATTACKS["pgd"].strength < ATTACKS["autoattack"].strength
    assert ATTACKS["pgd_l2"].strength == ATTACKS["pgd"].strength


def test_resolve_options_fills_defaults_from_the_class():
    assert resolve_options("fgsm") == {"eps": 8 / 255, "engine": "native"}
    assert resolve_options("pgd") == {"eps": 8 / 255, "engine": "native", "steps": 10,
                                      "alpha": None, "restarts": 1}
    assert resolve_options("pgd_l2")["eps"] == 0.5
    assert resolve_options("autoattack") == {
        "eps": 8 / 255, "engine": "pyautoattack", "norm": "Linf", "version": "standard",
        "attacks": ("apgd-ce", "apgd-t", "fab-t", "square"), "n_iter": 100, "restarts": 1}
    assert resolve_options("autoattack", version="plus")["restarts"] == 5
    assert resolve_options("autoattack", threat="l2", eps=0.5)["norm"] == "L2"


def test_resolve_options_keeps_what_is_given():
    assert resolve_options("pgd", eps=4 / 255, steps=20, alpha=1 / 255, restarts=3,
                           engine="torchattacks", threat="linf") == {
        "eps": 4 / 255, "engine": "torchattacks", "steps": 20, "alpha": 1 / 255, "restarts": 3}
    # an option an attack fixes is accepted at the value it fixes
    assert resolve_options("fgsm", steps=1, restarts=1) == resolve_options("fgsm")
    assert resolve_options("autoattack", version="standard", n_iter=100, restarts=1,
                           parts=["apgd-ce", "apgd-t", "fab-t", "square"]) == \
        resolve_options("autoattack")


def test_the_documented_ci_subset_is_plain_options():
    """docs/attacks.md: version custom, parts apgd-ce, n_iter 10 -- as a flag or YAML gives them."""
    from_list = resolve_options("autoattack", version="custom", parts=["apgd-ce"], n_iter=10)
    from_flag = resolve_options("autoattack", version="custom", parts="apgd-ce", n_iter=10)
    assert from_list == from_flag == {
        "eps": 8 / 255, "engine": "pyautoattack", "norm": "Linf", "version": "custom",
        "attacks": ("apgd-ce",), "n_iter": 10, "restarts": 1}
    assert resolve_options("autoattack", version="custom", parts="apgd-ce, apgd-t",
                           restarts=2)["attacks"] == ("apgd-ce", "apgd-t")


@pytest.mark.parametrize("name, given, message", [
    ("fgsm", {"steps": 5}, "option steps=5 does not apply to attack 'fgsm': it always runs 1 "
                           "step"),
    ("fgsm", {"alpha": 0.01}, "option alpha=0.01 does not apply to attack 'fgsm': it takes eps, "
                              "engine"),
    ("fgsm", {"restarts": 2}, "option restarts=2 does not apply to attack 'fgsm': it takes no "
                              "restarts"),
    ("fgsm", {"engine": "pyautoattack"}, "option engine='pyautoattack' does not apply to attack "
                                         "'fgsm': its engines are native, torchattacks"),
    ("pgd", {"version": "standard"}, "option version='standard' does not apply to attack 'pgd': "
                                     "it takes eps, engine, steps, alpha, restarts"),
    ("pgd", {"parts": ["apgd-ce"]}, "option parts=['apgd-ce'] does not apply to attack 'pgd'"),
    ("pgd", {"n_iter": 10}, "option n_iter=10 does not apply to attack 'pgd'"),
    ("pgd", {"threat": "l2"}, "option threat='l2' does not apply to attack 'pgd': it attacks "
                              "the linf ball"),
    ("pgd_l2", {"threat": "linf"}, "option threat='linf' does not apply to attack 'pgd_l2'"),
    ("pgd", {"engine": "foolbox"}, "option engine='foolbox' does not apply to attack 'pgd'"),
    ("autoattack", {"engine": "torchattacks"}, "option engine='torchattacks' does not apply to "
                                               "attack 'autoattack': its engines are "
                                               "pyautoattack"),
    ("autoattack", {"engine": "native"}, "option engine='native' does not apply to attack "
                                         "'autoattack'"),
    ("autoattack", {"steps": 10}, "option steps=10 does not apply to attack 'autoattack': its "
                                  "iterations are n_iter"),
    ("autoattack", {"alpha": 0.01}, "option alpha=0.01 does not apply to attack 'autoattack': "
                                    "it takes eps, engine, threat, version, parts, n_iter, "
                                    "restarts"),
    ("autoattack", {"n_iter": 10}, "option n_iter=10 does not apply to attack 'autoattack': "
                                   "version 'standard' fixes n_iter at 100; choose version "
                                   "'custom'"),
    ("autoattack", {"parts": ["apgd-ce"]}, "option parts=('apgd-ce',) does not apply to attack "
                                           "'autoattack': version 'standard' fixes parts"),
    ("autoattack", {"version": "plus", "restarts": 1}, "option restarts=1 does not apply to "
                                                       "attack 'autoattack': version 'plus' "
                                                       "fixes restarts at 5"),
    # values out of range or outside a closed set name the attack and the option too
    ("pgd", {"steps": 0}, "attack 'pgd': steps must be an integer >= 1, got 0"),
    ("pgd", {"alpha": 0}, "attack 'pgd': alpha=0.0 is out of range"),
    ("fgsm", {"eps": 1.5}, "attack 'fgsm': eps=1.5 is out of range"),
    ("pgd", {"restarts": 0}, "attack 'pgd': restarts must be an integer >= 1"),
    ("autoattack", {"version": "fast"}, "autoattack version must be one of standard, plus, "
                                        "rand, custom, got 'fast'"),
    ("autoattack", {"threat": "l3"}, "autoattack threat (norm) must be one of linf, l2, l1"),
    ("autoattack", {"version": "custom"}, "autoattack version 'custom' needs parts"),
    ("autoattack", {"version": "custom", "parts": ["apgd"]}, "unknown autoattack part"),
    ("autoattack", {"version": "custom", "parts": []}, "autoattack parts must be a non-empty"),
    ("autoattack", {"version": "custom", "parts": ["square", "square"]}, "autoattack parts "
                                                                          "repeat"),
    ("autoattack", {"version": "custom", "parts": ["apgd-ce"], "n_iter": 0}, "autoattack n_iter "
                                                                               "must be an "
                                                                               "integer >= 1"),
    ("cw", {}, "unknown attack 'cw'; known: fgsm, pgd, pgd_l2, autoattack"),
])
def test_resolve_options_refuses_what_does_not_apply(name, given, message):
    with pytest.raises(AttackError, match="^" + re.escape(message)):
        resolve_options(name, **given)


@pytest.mark.parametrize("name, params, label", [
    ("fgsm", {}, "FGSM"),
    ("pgd", None, "PGD-10"),
    ("pgd", {"steps": 20, "restarts": 2}, "PGD-20 (2 restarts)"),
    ("pgd_l2", {"steps": 5}, "L2 PGD-5"),
    ("autoattack", {}, "AutoAttack (standard: apgd-ce, apgd-t, fab-t, square)"),
    ("autoattack", {"version": "rand"}, "AutoAttack (rand: apgd-ce, apgd-dlr)"),
    ("autoattack", resolve_options("autoattack", version="custom", parts=["apgd-ce"], n_iter=10),
     "AutoAttack (custom: apgd-ce, n_iter 10)"),
    ("autoattack", {"version": "custom", "attacks": ["apgd-ce", "square"], "n_iter": 5,
                    "restarts": 3}, "AutoAttack (custom: apgd-ce, square, n_iter 5, 3 restarts)"),
])
def test_labels(name, params, label):
    assert ATTACKS[name].label(params) == label


def test_autoattack_records_version_parts_and_n_iter(trained):
    model, _ = trained
    standard = AutoAttack(model)
    assert standard.steps_run is None and standard.restarts == 1
    assert "attacks=('apgd-ce', 'apgd-t', 'fab-t', 'square')" in repr(standard)
    assert "version=standard" in repr(standard) and "n_iter=100" in repr(standard)
    rebuilt = AutoAttack(model, **standard.hyperparameters())  # the record rebuilds it
    assert rebuilt.hyperparameters() == standard.hyperparameters()
    assert AutoAttack(model, version="custom", attacks=["square"]).uses_gradients is False


def test_autoattack_custom_options_reach_pyautoattack(trained):
    """Plain options -> resolve_options -> AutoAttack -> the pyautoattack object it runs."""
    model, (images, labels) = trained
    kwargs = resolve_options("autoattack", eps=0.12, version="custom",
                             parts="apgd-ce,apgd-t", n_iter=3, restarts=2)
    attack = AutoAttack(model, **kwargs, seed=1)
    inner = attack.build(torch.device("cpu"), seed=1, num_classes=4)
    assert inner.version == "custom" and inner.attacks_to_run == ["apgd-ce", "apgd-t"]
    assert inner.apgd.n_iter == inner.apgd_targeted.n_iter == inner.fab.n_iter == 3
    assert inner.apgd.n_restarts == 2 and inner.apgd_targeted.n_target_classes == 3
    assert inner.apgd.n_iter_2 == 1 and inner.apgd.n_iter_min == 1  # schedule follows n_iter
    standard = AutoAttack(model, **resolve_options("autoattack", eps=0.12)).build(
        torch.device("cpu"), seed=1)
    assert standard.attacks_to_run == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert standard.apgd.n_iter == 100 and standard.apgd.n_restarts == 1

    eps = kwargs.pop("eps")
    frame = eps_sweep(model, images[:16], labels[:16], attack="autoattack", eps_list=[eps],
                      seed=1, options={"autoattack": kwargs})
    row = frame.iloc[0]
    params = json.loads(row["params"])
    assert row["restarts"] == 2 and (params["version"], params["attacks"], params["n_iter"]) == (
        "custom", ["apgd-ce", "apgd-t"], 3)
    assert params["engine"] == "pyautoattack"
    assert params["label"] == "AutoAttack (custom: apgd-ce, apgd-t, n_iter 3, 2 restarts)"
    with torch.no_grad():
        clean = int((model(images[:16]).argmax(1) == labels[:16]).sum())
    assert row["correct"] < clean  # the subset really attacked


def test_sweep_settings_reach_only_the_attacks_that_take_them(trained):
    model, _ = trained
    shared = dict(steps=3, alpha=0.01, restarts=4, engine="torchattacks", seed=0)
    fgsm = build_attack(model, "fgsm", 0.1, **shared)
    assert (fgsm.engine, fgsm.steps_run, fgsm.restarts) == ("torchattacks", 1, 1)
    pgd = build_attack(model, "pgd", 0.1, **shared)
    assert (pgd.engine, pgd.steps, pgd.alpha, pgd.restarts) == ("torchattacks", 3, 0.01, 4)
    standard = build_attack(model, "autoattack", 0.1, **shared)
    assert (standard.engine, standard.version, standard.restarts) == ("pyautoattack",
                                                                      "standard", 1)
    custom = build_attack(model, "autoattack", 0.1, **shared, options={
        "version": "custom", "attacks": ["apgd-ce"], "n_iter": 2})
    assert custom.restarts == 4 and custom.n_iter == 2
    defaults = build_attack(model, "pgd", 0.1)
    assert (defaults.engine, defaults.steps, defaults.restarts) == ("native", 10, 1)
    with pytest.raises(AttackError, match="PGD takes no argument.s. version"):
        build_attack(model, "pgd", 0.1, options={"version": "custom"})
    with pytest.raises(AttackError, match="sets eps; the sweep's eps come from eps_list"):
        eps_sweep(model, torch.rand(2, 3, 8, 8), torch.zeros(2, dtype=torch.long),
                  attack="pgd", options={"pgd": {"eps": 0.1}})


# --------------------------------------------------------------------------- a new attack
class UniformNoise(Attack):
    """Uniform noise: `steps` random corners of the L-inf ball, the highest loss kept.

    A gradient-free attack defined outside the package, registered through attacks.register.
    """

    name = "uniform_noise"
    title = "Noise"
    threat = "linf"
    default_eps = 0.1
    default_steps = 3
    strength = 5  # claims to beat every built-in attack, so the sweep checks it against them
    uses_gradients = False
    engines = ("native",)
    options = ("steps",)

    def __init__(self, model, eps=default_eps, steps=default_steps, **options):
        super().__init__(model, **options)
        self.eps, self.steps = eps, steps

    def hyperparameters(self):
        return {"eps": self.eps, "steps": self.steps}

    def forward(self, images, labels, generator):
        best, best_loss = images, None
        for _ in range(self.steps):
            sign = torch.randint(0, 2, images.shape, generator=generator,
                                 device=images.device) * 2 - 1
            adv = torch.clamp(images + self.eps * sign, 0, 1)
            with torch.no_grad():
                loss = nn.functional.cross_entropy(self.model(adv), labels, reduction="none")
            if best_loss is None:
                best, best_loss = adv, loss
            else:
                better = loss > best_loss
                best = torch.where(better[:, None, None, None], adv, best)
                best_loss = torch.maximum(loss, best_loss)
        return best


class CheckedNoise(UniformNoise):
    """The same noise, declared as a gradient attack so that the loss check applies."""

    name = "checked_noise"
    uses_gradients = True


@pytest.fixture
def noise_attacks():
    for cls in (UniformNoise, CheckedNoise):
        register(cls)
    yield
    for cls in (UniformNoise, CheckedNoise):
        del ATTACKS[cls.name]


def test_a_registered_attack_gets_its_metadata_used(noise_attacks, trained):
    model, (images, labels) = trained
    info = describe("uniform_noise")
    assert (info["default_steps"], info["engines"], info["options"]) == (
        3, ["native"], ["eps", "engine", "steps"])
    assert resolve_options("uniform_noise", steps=5) == {"eps": 0.1, "engine": "native",
                                                         "steps": 5}
    with pytest.raises(AttackError, match="option alpha=0.1 does not apply to attack "
                                          "'uniform_noise': it takes eps, engine, steps"):
        resolve_options("uniform_noise", alpha=0.1)
    with pytest.raises(AttackError, match="'uniform_noise': its engines are native"):
        resolve_options("uniform_noise", engine="torchattacks")

    frame = eps_sweep(model, images, labels, attack="pgd,uniform_noise", eps_list=[0.12],
                      steps=None, seed=0).set_index("attack")
    assert frame.loc["uniform_noise", "steps"] == 3  # the class default, not PGD's 10
    assert frame.loc["pgd", "steps"] == 10
    assert json.loads(frame.loc["uniform_noise", "params"])["label"] == "Noise-3"
    noise, pgd = frame.loc["uniform_noise", "correct"], frame.loc["pgd", "correct"]
    assert noise > pgd  # random corners are far weaker than PGD on this model...
    warnings = frame.loc["uniform_noise", "warnings"]
    assert f"uniform_noise accuracy {noise}/64 above pgd {pgd}/64 at the same eps" in warnings
    assert "above fgsm" in warnings  # ... and than the hidden FGSM reference
    assert "above" not in frame.loc["pgd", "warnings"]  # PGD is the weaker one: no flag


def test_the_loss_check_follows_uses_gradients(noise_attacks):
    class InputBlind(nn.Module):  # the loss cannot move: the gradient check must flag it
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.tensor([2.0, 0.0, 0.0]))

        def forward(self, x):
            return self.bias + 0 * x.flatten(1)[:, :3]

    images = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    frame = eps_sweep(InputBlind(), images, labels, attack="uniform_noise,checked_noise",
                      eps_list=[0.05]).set_index("attack")
    assert "not above the clean loss" not in frame.loc["uniform_noise", "warnings"]
    assert "not above the clean loss" in frame.loc["checked_noise", "warnings"]
    assert "above uniform_noise" not in frame.loc["checked_noise", "warnings"]  # same strength


def test_threats_are_compared_only_with_their_own(trained):
    model, (images, labels) = trained
    frame = eps_sweep(model, images, labels, attack="fgsm,pgd_l2", eps_list=[0.15], steps=2)
    l2, fgsm = frame.set_index("attack")["correct"].loc[["pgd_l2", "fgsm"]]
    assert l2 > fgsm  # an L2 ball of 0.15 is tiny next to an L-inf one ...
    assert "above fgsm" not in frame.set_index("attack").loc["pgd_l2", "warnings"]  # ... no flag


@pytest.mark.parametrize("attributes, message", [
    ({"name": "pgd"}, "attack name 'pgd' is already registered .PGD."),
    ({"name": ""}, "name must be a non-empty name"),
    ({"name": "a,b"}, "without commas"),
    ({"threat": "l3"}, "threat must be one of linf, l2, got 'l3'"),
    ({"default_eps": -1}, "default_eps must be a number >= 0"),
    ({"default_steps": 0}, "default_steps must be None or an integer >= 1"),
    ({"default_steps": None}, "an attack that takes steps needs an integer default_steps"),
    ({"strength": 1.5}, "strength must be an integer"),
    ({"uses_gradients": "yes"}, "uses_gradients must be True or False"),
    ({"engines": ()}, "engines must be a non-empty tuple"),
    ({"options": ("steps", "momentum")}, r"options \['momentum'\] are not plain options"),
])
def test_register_refuses_bad_metadata(attributes, message):
    attributes = {"name": "bad_noise", **attributes}
    cls = type("BadNoise", (UniformNoise,), attributes)
    with pytest.raises(AttackError, match=message):
        register(cls)
    assert "bad_noise" not in ATTACKS and attacks.ATTACKS is ATTACKS
    with pytest.raises(AttackError, match="not a subclass of attacks.Attack"):
        register(nn.Module)
