"""RobustBench zoo: local files where robustbench expects them, names and errors, download."""
import http.server
import os
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest
import torch

from robust_eval import checkpoints
from robust_eval.checkpoints import (CheckpointError, download_robustbench, list_robustbench,
                                     load_robustbench, robustbench_entry, robustbench_path)

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_standard_wrn_from_local_model_dir_matches_robustbench(tmp_path):
    from robust_eval._compat import install_autoattack_alias

    install_autoattack_alias()  # robustbench imports `autoattack`
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet
    from robustbench.utils import load_model

    torch.manual_seed(0)
    reference = WideResNet(depth=28, widen_factor=10).eval()
    path = robustbench_path("Standard", tmp_path, "cifar10", "Linf")
    assert path == tmp_path / "cifar10" / "Linf" / "Standard.pt"
    path.parent.mkdir(parents=True)
    # The zoo file holds {'state_dict': ...} with DataParallel `module.` prefixes.
    torch.save({"state_dict": {"module." + k: v for k, v in reference.state_dict().items()}}, path)

    ours = load_robustbench("Standard", tmp_path)
    assert ours.robust_eval_meta["arch"] == "wrn28_10" and not ours.training
    assert ours.mean == (0.0, 0.0, 0.0) and ours.std == (1.0, 1.0, 1.0)  # zoo takes [0,1]
    theirs = load_model("Standard", model_dir=tmp_path, dataset="cifar10", threat_model="Linf")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(ours(x), expected)
        torch.testing.assert_close(theirs(x), expected)


def test_missing_and_foreign_zoo_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match=r"Standard\.pt does not exist; download it with "
                                              r"`robust-eval zoo download Standard --dataset "
                                              r"cifar10 --threat Linf --model-dir "):
        load_robustbench("Standard", tmp_path)
    with pytest.raises(CheckpointError, match="no RobustBench model 'Nope'"):
        load_robustbench("Nope", tmp_path)
    path = robustbench_path("Standard", tmp_path)
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {"conv1.weight": torch.zeros(16, 3, 3, 3)}}, path)
    with pytest.raises(CheckpointError, match=r"Standard\.pt does not fit RobustBench Standard: "
                                              r"missing block1"):
        load_robustbench("Standard", tmp_path)


def test_threat_and_dataset_are_case_insensitive_and_errors_blame_the_wrong_part(tmp_path):
    assert robustbench_path("Standard", tmp_path, "CIFAR10", "linf") == (
        tmp_path / "cifar10" / "Linf" / "Standard.pt")
    assert robustbench_entry("Standard", "cifar10", "l2")[:2] == ("cifar10", "L2")
    with pytest.raises(CheckpointError, match=r"cifar10/Linf/Standard\.pt does not exist"):
        load_robustbench("Standard", tmp_path, threat_model="linf")  # not "no model 'Standard'"
    with pytest.raises(CheckpointError, match=r"unknown RobustBench threat model 'linfinity': "
                                              r"choose Linf, L2, corruptions"):
        load_robustbench("Standard", tmp_path, threat_model="linfinity")
    with pytest.raises(CheckpointError, match=r"unknown RobustBench dataset 'mnist': choose "
                                              r"cifar10, cifar100, imagenet"):
        robustbench_entry("Standard", "mnist")
    assert robustbench_path("Nope", tmp_path, "mnist") == tmp_path / "mnist" / "Linf" / "Nope.pt"
    with pytest.raises(CheckpointError, match=r"RobustBench has no cifar100 models for threat L2 "
                                              r"\(cifar100 has Linf, corruptions\)"):
        robustbench_entry("Standard", "cifar100", "L2")
    with pytest.raises(CheckpointError, match=r"no RobustBench model 'Standrd' for cifar10/Linf; "
                                              r"did you mean 'Standard'\?"):
        load_robustbench("Standrd", tmp_path)
    with pytest.raises(CheckpointError, match=r"'Carmon2019Unlabeled' for cifar10/L2; "
                                              r"'Carmon2019Unlabeled' exists for cifar10/Linf"):
        robustbench_entry("Carmon2019Unlabeled", "cifar10", "L2")


FORM = ('<html><body><p>cannot scan this file for viruses</p><form id="download-form" '
        'action="/download" method="get"><input type="hidden" name="id" value="{id}">'
        '<input type="hidden" name="export" value="download"><input type="hidden" '
        'name="confirm" value="t"><input type="hidden" name="uuid" value="u-1">'
        '<input type="submit" value="Download anyway"></form></body></html>')


class _Drive(http.server.BaseHTTPRequestHandler):
    """Google Drive's two answers: the file, or (big files) a virus-scan form leading to it."""
    files: dict = {}
    with_form: set = set()
    pages: dict = {}  # id -> a page answered instead (quota exceeded, ...)
    seen: list = []

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        self.seen.append((url.path, query, self.headers.get("User-Agent")))
        file_id = query.get("id")
        if url.path == "/uc" and file_id in self.pages:
            body, kind = self.pages[file_id].encode(), "text/html"
        elif url.path == "/uc" and file_id in self.with_form:
            body, kind = FORM.format(id=file_id).encode(), "text/html; charset=utf-8"
        elif file_id in self.files and (url.path == "/uc" or query.get("uuid") == "u-1"):
            body, kind = self.files[file_id], "application/octet-stream"
        else:
            return self.send_error(404)
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def drive(monkeypatch, tmp_path):
    _Drive.files, _Drive.with_form, _Drive.pages, _Drive.seen = {}, set(), {}, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Drive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(checkpoints, "GDRIVE_URL", f"http://127.0.0.1:{server.server_port}"
                                                   f"/uc?export=download&confirm=t")
    yield _Drive
    server.shutdown()
    server.server_close()


def _zoo_file(tmp_path, obj) -> bytes:
    path = tmp_path / "served.pt"
    torch.save(obj, path)
    data = path.read_bytes()
    path.unlink()
    return data


def test_download_fetches_the_zoo_entrys_file_and_checks_it(drive, tmp_path):
    from robustbench.utils import CANNED_USER_AGENT

    gdrive_id = robustbench_entry("Standard")[2]["gdrive_id"]
    served = _zoo_file(tmp_path, {"state_dict": {"module.conv1.weight": torch.ones(16, 3, 3, 3)}})
    drive.files[gdrive_id] = served
    path = download_robustbench("Standard", tmp_path / "models", threat_model="linf")
    assert path == tmp_path / "models" / "cifar10" / "Linf" / "Standard.pt"
    assert path.read_bytes() == served and os.listdir(path.parent) == ["Standard.pt"]
    assert drive.seen == [("/uc", {"export": "download", "confirm": "t", "id": gdrive_id},
                           CANNED_USER_AGENT)]
    assert download_robustbench("Standard", tmp_path / "models") == path  # present: kept
    assert len(drive.seen) == 1


def test_download_follows_the_virus_scan_form(drive, tmp_path):
    gdrive_id = robustbench_entry("Carmon2019Unlabeled")[2]["gdrive_id"]
    drive.files[gdrive_id] = _zoo_file(tmp_path, {"w": torch.zeros(2)})
    drive.with_form.add(gdrive_id)
    path = download_robustbench("Carmon2019Unlabeled", tmp_path)
    assert torch.load(path, weights_only=True)["w"].shape == (2,)
    assert [(p, q.get("uuid")) for p, q, _ in drive.seen] == [("/uc", None), ("/download", "u-1")]


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("true",))


@pytest.mark.parametrize("served, message", [
    (None, r"cannot download Google Drive file .* HTTP Error 404"),
    ("<html><body>Sign in</body></html>", r"did not serve file .*: it answered with a web page"),
    ('<p class="uc-error-subcaption">Too many users have viewed or downloaded this file '
     'recently.</p>', r"did not serve file \w+: Too many users have viewed"),
    (b"\x00not a checkpoint" * 100, r"the file served by http://127\.0\.0\.1:\d+/uc.* is "
                                    r"unusable \(.*not a checkpoint file"),
    ({"payload": _RunsCode()}, r"unusable \(refusing to load .*code execution"),
    ([torch.zeros(1)], r"holds a list, not a state dict"),
])
def test_a_failed_download_leaves_nothing(drive, tmp_path, served, message):
    gdrive_id = robustbench_entry("Standard")[2]["gdrive_id"]
    if isinstance(served, str):
        drive.pages[gdrive_id] = served
    elif isinstance(served, bytes):
        drive.files[gdrive_id] = served
    elif served is not None:
        drive.files[gdrive_id] = _zoo_file(tmp_path, served)
    models = tmp_path / "models"
    with pytest.raises(CheckpointError, match=message):
        download_robustbench("Standard", models)
    assert not [p for p in models.rglob("*") if p.is_file()]


def test_models_without_a_single_zoo_file_are_refused_by_name(tmp_path):
    rows = list_robustbench("cifar10", "LINF")
    assert {d for d, *_ in rows} == {"cifar10"} and {t for _, t, *_ in rows} == {"Linf"}
    assert ("cifar10", "Linf", "Standard") in [r[:3] for r in rows]
    ensemble = next(name for _, _, name, gid in rows if isinstance(gid, list))
    timm = next(name for _, _, name, gid in rows if gid is None)
    with pytest.raises(CheckpointError, match=rf"{ensemble} \(cifar10/Linf\) is an ensemble of "
                                              r"\d files"):
        download_robustbench(ensemble, tmp_path)
    with pytest.raises(CheckpointError, match=rf"{timm} \(cifar10/Linf\) is a timm model"):
        download_robustbench(timm, tmp_path)


@pytest.mark.slow
def test_importing_robustbench_through_us_is_quiet_but_user_warnings_still_show():
    """robustbench's import noise is silenced around our import only; no global filter."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PYTHONWARNINGS", None)
    ours = ("import warnings, robust_eval.checkpoints as c\n"
            "before = list(warnings.filters)\n"
            "c.list_robustbench('cifar10', 'Linf')\n"
            "assert warnings.filters == before, 'a filter was left behind'\n"
            "warnings.warn('raised by user code', FutureWarning)\n")
    theirs = ("from robust_eval._compat import install_autoattack_alias\n"
              "install_autoattack_alias()\n"
              "import robustbench\n")  # the same imports, unwrapped: noisy
    for code, noisy in ((ours, False), (theirs, True)):
        run = subprocess.run([sys.executable, "-W", "default", "-c", code], env=env,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        noise = [line for line in run.stderr.splitlines()
                 if "Warning:" in line and "raised by user code" not in line]
        assert bool(noise) == noisy, run.stderr
        assert ("raised by user code" in run.stderr) == (not noisy)
