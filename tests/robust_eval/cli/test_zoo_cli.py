"""`robust-eval zoo list|download`, and evaluate's RobustBench errors that point to it."""
import functools
import http.server
import threading

import pytest
import torch

from robust_eval import checkpoints
from robust_eval.cli import build_parser, main


@pytest.fixture
def zoo_server(tmp_path, monkeypatch):
    """A plain file server: GDRIVE_URL's path /uc answers with the fake zoo file `served/uc`."""
    served = tmp_path / "served"
    served.mkdir()
    torch.save({"state_dict": {"module.fc.weight": torch.ones(10, 4)}}, served / "uc")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(checkpoints, "GDRIVE_URL", f"http://127.0.0.1:{server.server_port}"
                                                   f"/uc?export=download&confirm=t")
    yield served / "uc"
    server.shutdown()
    server.server_close()


def test_zoo_download_puts_the_file_where_evaluate_reads_it(zoo_server, tmp_path, capsys):
    models = tmp_path / "models"
    assert main(["zoo", "download", "Standard", "--threat", "linf", "--model-dir",
                 str(models)]) == 0
    path = models / "cifar10" / "Linf" / "Standard.pt"
    assert f"downloaded: {path}" in capsys.readouterr().out
    assert path.read_bytes() == zoo_server.read_bytes()
    assert main(["zoo", "download", "Standard", "--model-dir", str(models)]) == 0
    assert f"already present: {path}" in capsys.readouterr().out
    # evaluate finds it (and then refuses it by its keys: the served file is not a WRN-28-10)
    assert main(["evaluate", "--robustbench", "Standard", "--robustbench-threat", "linf",
                 "--model-dir", str(models), "--dataset", "cifar10", "--data-root",
                 str(tmp_path)]) == 2
    assert "Standard.pt does not fit RobustBench Standard" in capsys.readouterr().err


def test_evaluate_and_zoo_errors_name_the_fix(tmp_path, capsys):
    assert main(["evaluate", "--robustbench", "Standard", "--model-dir", str(tmp_path),
                 "--dataset", "cifar10"]) == 2
    err = capsys.readouterr().err
    assert (f"download it with `robust-eval zoo download Standard --dataset cifar10 --threat "
            f"Linf --model-dir {tmp_path}`") in err and "download=True" not in err
    assert main(["zoo", "download", "Standrd"]) == 2
    assert "robust-eval zoo: error: no RobustBench model 'Standrd' for cifar10/Linf; did you " \
           "mean 'Standard'?" in capsys.readouterr().err
    assert main(["zoo", "list", "--threat", "Linfinity"]) == 2
    assert "unknown RobustBench threat model 'Linfinity'" in capsys.readouterr().err


def test_zoo_list_filters_and_marks_models_without_a_zoo_file(capsys):
    assert main(["zoo", "list", "--dataset", "CIFAR100", "--threat", "linf"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("cifar100\tLinf\t") for line in lines)
    assert any(line.endswith("(timm model, no zoo file)") for line in lines)
    assert any("(ensemble of " in line for line in lines)


def test_help_changes_only_by_the_zoo_line(monkeypatch):
    import robust_eval.cli as cli

    with_zoo = build_parser().format_help().splitlines()
    monkeypatch.setattr(cli, "COMMANDS", {k: v for k, v in cli.COMMANDS.items() if k != "zoo"})
    without = build_parser().format_help().splitlines()
    added = [line for line in with_zoo if line not in without]
    assert [line.split() for line in added] == [
        ["zoo", "list", "or", "download", "RobustBench", "zoo", "models"]]
    assert [line for line in with_zoo if line not in added] == without
