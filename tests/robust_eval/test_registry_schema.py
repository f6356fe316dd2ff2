import math

import pytest

from robust_eval.registry import Registry, RegistryError
from robust_eval.schema import COLUMNS, make_row, to_frame, wilson_interval


def test_registry_register_list_and_suggest():
    reg = Registry("model")

    @reg.register("resnet20")
    def make20():
        return 20

    reg.register("resnet56")(lambda: 56)
    assert reg.list("resnet*") == ["resnet20", "resnet56"]
    assert reg.get("resnet20")() == 20
    with pytest.raises(RegistryError, match="did you mean 'resnet20'"):
        reg.get("resnet2O")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("resnet20")(make20)


def test_registry_view_sees_later_leaf_entries():
    leaf = {}
    view = Registry.view("attack", leaf)
    leaf["fgsm"] = object
    assert "fgsm" in view and view.list() == ["fgsm"]


def test_hub_views_of_leaf_registries():
    from robust_eval.registry import attack_registry, corruption_registry

    assert {"fgsm", "pgd", "pgd_l2", "autoattack"} <= set(attack_registry())
    corruptions = corruption_registry()
    assert len(corruptions) == 19 and "frost" in corruptions
    with pytest.raises(RegistryError, match="did you mean 'frost'"):
        corruptions.get("forst")


def test_wilson_interval_known_values():
    from scipy.stats import binomtest

    for correct, n in [(81, 100), (0, 10), (10, 10), (917, 1000)]:
        expected = binomtest(correct, n).proportion_ci(method="wilson")
        assert wilson_interval(correct, n) == pytest.approx((expected.low, expected.high), abs=1e-12)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_make_row_fills_schema_and_rejects_bad_values():
    row = make_row(correct=3, n=4, model="m", benchmark="clean")
    assert row["accuracy"] == 0.75 and row["ci_low"] < 0.75 < row["ci_high"]
    assert list(to_frame([row]).columns[: len(COLUMNS)]) == COLUMNS
    with pytest.raises(ValueError, match="unknown result column"):
        make_row(correct=1, n=1, acc=1)
    with pytest.raises(ValueError, match="must lie in"):
        make_row(correct=5, n=4)


def test_code_version_names_commit_and_uncommitted_changes(tmp_path):
    """Rows from an edited tree must not carry the bare commit id of the clean tree."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    repo = tmp_path / "checkout"
    shutil.copytree(Path(__file__).resolve().parents[2] / "robust_eval", repo / "robust_eval",
                    ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "x"], check=True)
    probe = [sys.executable, "-c",
             "from robust_eval.schema import code_version; print(code_version())"]
    env = {"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"}

    def version():
        return subprocess.run(probe, cwd=tmp_path, env=env, capture_output=True, text=True,
                              check=True).stdout.strip()

    clean = version()
    sha = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    assert clean.endswith(f"+{sha}")
    with open(repo / "robust_eval" / "schema.py", "a") as f:
        f.write("\n# edited\n")
    dirty = version()
    assert dirty.startswith(clean + ".dirty") and len(dirty) == len(clean) + len(".dirty") + 8
