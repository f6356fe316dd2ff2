"""Start-up cost: `robust-eval --version`/`--help` import no torch, `import robust_eval` neither
robustbench nor pyautoattack; the lazily listed commands are exactly the registered ones."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def modules_after(code: str):
    """Top-level packages imported by `code`, run in a fresh interpreter on this checkout."""
    probe = code + ("\nimport sys, json\n"
                    "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                            text=True, timeout=120, env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1])), result.stdout


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help_import_no_torch(flag):
    loaded, printed = modules_after(
        "from robust_eval.cli import main\n"
        f"try:\n    main([{flag!r}])\nexcept SystemExit as stop:\n    assert stop.code == 0")
    assert "torch" not in loaded and "numpy" not in loaded
    assert "robust-eval 0.1.0" in printed if flag == "--version" else "evaluate" in printed


def test_importing_the_package_loads_no_zoo_or_autoattack():
    loaded, _ = modules_after("import robust_eval")
    assert not loaded & {"robustbench", "pyautoattack", "autoattack", "torch"}


def test_listed_commands_are_the_registered_ones_with_their_help():
    from robust_eval.cli import COMMANDS, build_parser

    def listed(parser):
        action = next(a for a in parser._actions if a.dest == "command")
        return {choice.dest: choice.help for choice in action._choices_actions}

    full = listed(build_parser())
    assert full == {name: text for name, (_, text) in COMMANDS.items()}
    assert listed(build_parser(["--help"])) == full
    # a command's own flags are there when it is named, whatever else is listed
    args = build_parser(["run", "x.yaml"]).parse_args(["run", "x.yaml", "--dry-run"])
    assert (args.config, args.dry_run) == ("x.yaml", True)
