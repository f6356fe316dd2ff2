"""Config validation names the bad field by its path; the grid expands as documented."""
import copy
from pathlib import Path

import pytest

from robust_eval.jobs.config import ConfigError, load_config, packaged_config, parse_config
from robust_eval.jobs.grid import expand, model_identity

REPO = Path(__file__).resolve().parents[3]

BASE = {
    "name": "t",
    "models": [{"name": "m", "checkpoint": "m.safetensors", "arch": "tiny_cnn", "norm": "bn"}],
    "datasets": [{"name": "digits", "kind": "digits"}],
    "benchmarks": [
        {"type": "clean"},
        {"type": "corruption", "corruptions": ["fog", "snow"], "severities": [1, 3]},
        {"type": "attack", "attack": "pgd", "eps": ["2/255", 0.03], "steps": 3},
        {"type": "label_noise", "rates": [0.2, 0.4], "seeds": [0, 1]},
    ],
}


def parsed(mutate=None):
    raw = copy.deepcopy(BASE)
    if mutate:
        mutate(raw)
    return parse_config(raw, source="cfg.yaml", base_dir=Path("/base"))


@pytest.mark.parametrize("mutate, path, words", [
    (lambda r: r["benchmarks"][2]["eps"].__setitem__(1, "abc"), "benchmarks[2].eps[1]",
     "fraction"),
    (lambda r: r["benchmarks"][2]["eps"].__setitem__(0, -0.1), "benchmarks[2].eps[0]", ">= 0"),
    (lambda r: r["benchmarks"][1]["corruptions"].append("fgo"), "benchmarks[1].corruptions[2]",
     "not one of"),
    (lambda r: r["benchmarks"][1].__setitem__("severities", [1, 6]),
     "benchmarks[1].severities[1]", "must be <= 5"),
    (lambda r: r["benchmarks"][3].__setitem__("rates", [0.2, 1.5]), "benchmarks[3].rates[1]",
     "<= 1"),
    (lambda r: r["benchmarks"][3].__setitem__("rates", [1.0]), "benchmarks[3].rates[0]",
     "below 1"),
    (lambda r: r["benchmarks"][3].__setitem__("kinds", ["pairflip"]), "benchmarks[3].kinds[0]",
     "not one of"),
    (lambda r: r["benchmarks"][2].__setitem__("attack", "pdg"), "benchmarks[2].attack",
     "not one of"),
    (lambda r: r["benchmarks"][0].__setitem__("type", "clena"), "benchmarks[0].type", "clean"),
    (lambda r: r["benchmarks"][2].__setitem__("stpes", 3), "benchmarks[2].stpes",
     "did you mean 'steps'"),
    (lambda r: r["benchmarks"][2].__setitem__("models", ["nope"]), "benchmarks[2].models[0]",
     "no model named"),
    (lambda r: r["models"][0].pop("checkpoint"), "models[0]", "needs one of"),
    (lambda r: r["models"][0].__setitem__("std", [1, 0, 1]), "models[0].std", "> 0"),
    (lambda r: r["models"].append(dict(r["models"][0])), "models[1].name", "already used"),
    (lambda r: r["datasets"].append({"name": "c", "kind": "cifar10"}), "datasets[1].root",
     "needs a root"),
    (lambda r: r.__setitem__("benchmarks", []), "benchmarks", "must not be empty"),
    (lambda r: r.__setitem__("device", "gpu"), "device", "cuda"),
])
def test_validation_names_the_bad_field(mutate, path, words):
    with pytest.raises(ConfigError) as error:
        parsed(mutate)
    message = str(error.value)
    assert message.startswith(f"cfg.yaml: {path}: "), message
    assert words in message


def test_fractions_paths_and_defaults():
    config = parsed()
    attack = config.benchmarks[2].options
    assert attack["eps"] == [2 / 255, 0.03]
    assert attack["options"]["restarts"] == 1 and attack["options"]["engine"] == "native"
    assert config.models[0].checkpoint == "/base/m.safetensors"  # relative to the config file
    corruption = config.benchmarks[1].options
    assert corruption["source"] == "auto" and corruption["params"] == "auto"


def test_grid_expands_one_cell_per_row_group_and_keys_are_identities():
    config = parsed()
    identity = model_identity(config.models[0], "a" * 64)
    cells = expand(config, {"m": identity}, "v1")
    kinds = [c.benchmark for c in cells]
    assert kinds.count("clean") == 1
    assert kinds.count("corruption") == 2 * 2
    assert kinds.count("attack") == 2
    assert kinds.count("label_noise") == 2 * 2
    keys = [c.key for c in cells]
    assert len(set(keys)) == len(keys)
    again = expand(parsed(), {"m": identity}, "v1")
    assert [c.key for c in again] == keys  # stable across processes and runs
    # checkpoint, code version and seed each change the key
    other_ckpt = expand(config, {"m": model_identity(config.models[0], "b" * 64)}, "v1")
    assert not set(c.key for c in other_ckpt) & set(keys)
    assert not set(c.key for c in expand(config, {"m": identity}, "v2")) & set(keys)
    seeded = parse_config(dict(copy.deepcopy(BASE), seed=7), source="x", base_dir=Path("/base"))
    clean_keys = {c.key for c in expand(seeded, {"m": identity}, "v1") if c.benchmark == "clean"}
    assert not clean_keys & set(keys)


def test_duplicate_cells_are_run_once():
    raw = copy.deepcopy(BASE)
    raw["benchmarks"].append({"type": "clean"})
    config = parse_config(raw, source="x", base_dir=Path("/b"))
    cells = expand(config, {"m": model_identity(config.models[0], "a" * 64)}, "v")
    assert [c.benchmark for c in cells].count("clean") == 1


def test_corruption_source_auto_uses_published_files_when_present(tmp_path):
    raw = copy.deepcopy(BASE)
    raw["benchmarks"] = [{"type": "corruption", "path": str(tmp_path),
                          "corruptions": ["fog", "snow"], "severities": [1]}]
    (tmp_path / "fog.npy").write_bytes(b"")
    config = parse_config(raw, source="x", base_dir=tmp_path)
    cells = expand(config, {"m": model_identity(config.models[0], "a" * 64)}, "v")
    assert {c.params["corruption"]: c.params["source"] for c in cells} == \
        {"fog": "files", "snow": "generated"}


def test_shipped_configs_validate_and_demo_copy_matches_package():
    assert (REPO / "configs" / "demo.yaml").read_text() == packaged_config("demo").read_text()
    demo = load_config(packaged_config("demo"))
    assert {m.norm for m in demo.models} == {"bn", "convnorm"}
    types = [b.type for b in demo.benchmarks]
    assert types.count("clean") == 1 and "label_noise" in types
    corruption = next(b for b in demo.benchmarks if b.type == "corruption").options
    assert len(corruption["corruptions"]) == 15 and corruption["severities"] == [1, 2, 3, 4, 5]
    assert corruption["source"] == "generated"
    for name in ("cifar10", "imagenet"):
        config = load_config(REPO / "configs" / f"{name}.yaml")
        assert config.datasets[0].kind == name
    ci_small = load_config(REPO / "configs" / "ci-small.yaml")  # the config docs/ci.md gates on
    assert {b.type for b in ci_small.benchmarks} == {"clean", "corruption", "attack"}
    for shipped in sorted((REPO / "configs").glob("*.yaml")):  # every shipped config validates
        load_config(shipped)


def test_load_config_reports_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
