"""The CIFAR-C downloader against a local HTTP server with Range support (no network)."""
import hashlib
import http.server
import re
import tarfile
import threading

import numpy as np
import pytest

from corruptions import download
from corruptions.datasets import CifarC, write_cifar_c, write_cifar_c_labels
from corruptions.download import ARCHIVES, DownloadError, download_cifar_c, download_file


class Server:
    """Serves `payload` at /CIFAR-10-C.tar; honours Range; can cut the body after N bytes."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.cut_after = []      # per request: close after this many body bytes (None = full)
        self.ignore_range = False
        self.requests = []       # Range header of each request
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.headers.get("Range"))
                if self.path.split("?")[0] != "/CIFAR-10-C.tar":
                    self.send_error(404)
                    return
                data, start = outer.payload, 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and not outer.ignore_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = outer.cut_after.pop(0) if outer.cut_after else None
                self.wfile.write(body if cut is None else body[:cut])
                self.wfile.flush()
                if cut is not None:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/CIFAR-10-C.tar?download=1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def fake_archive(tmp_path):
    """A small CIFAR-10-C.tar in the official layout (2 images per severity)."""
    src = tmp_path / "src" / "CIFAR-10-C"
    write_cifar_c_labels(src, np.array([1, 7]))
    rng = np.random.default_rng(0)
    write_cifar_c(src, "frost", [rng.integers(0, 256, (2, 32, 32, 3), np.uint8)
                                 for _ in range(5)])
    archive = tmp_path / "src" / "CIFAR-10-C.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(src, arcname="CIFAR-10-C")
    payload = archive.read_bytes()
    return payload, hashlib.md5(payload).hexdigest()


def test_official_constants():
    assert ARCHIVES["cifar10"].md5 == "56bf5dcef84df0e2308c6dcbcbbd8499"
    assert "zenodo.org/records/2535967/files/CIFAR-10-C.tar" in ARCHIVES["cifar10"].url
    assert ARCHIVES["cifar100"].md5 == "11f0ed0f1191edbf9fa23466ae6021d3"
    assert "zenodo.org/records/3555552/files/CIFAR-100-C.tar" in ARCHIVES["cifar100"].url


def test_download_extract_and_skip(tmp_path, fake_archive):
    payload, md5 = fake_archive
    root = tmp_path / "data"
    with Server(payload) as server:
        folder = download_cifar_c("cifar10", root, url=server.url, md5=md5, progress=False)
        assert folder == root / "CIFAR-10-C"
        data = CifarC(folder)
        assert data.labels.tolist() == [1, 7] and data.corruptions() == ["frost"]
        assert sorted(p.name for p in root.iterdir()) == ["CIFAR-10-C"]  # archive removed
        # second call: the folder exists, nothing is fetched
        download_cifar_c("cifar10", root, url=server.url, md5=md5, progress=False)
        assert len(server.requests) == 1


def test_interrupted_transfer_resumes(tmp_path, fake_archive):
    payload, md5 = fake_archive
    dest = tmp_path / "CIFAR-10-C.tar"
    with Server(payload) as server:
        server.cut_after = [1000, 5000]  # two cuts, then the rest
        download_file(server.url, dest, md5=md5, progress=False)
        assert dest.read_bytes() == payload
        assert server.requests == [None, "bytes=1000-", "bytes=6000-"]
    assert not (tmp_path / "CIFAR-10-C.tar.part").exists()


def test_interrupted_beyond_retries_keeps_part_then_resumes(tmp_path, fake_archive):
    payload, md5 = fake_archive
    root = tmp_path / "data"
    with Server(payload) as server:
        server.cut_after = [700, 0]
        with pytest.raises(DownloadError, match=r"interrupted after 2 attempts at 700 of "
                                                rf"{len(payload)} bytes.*run again to resume"):
            download_cifar_c("cifar10", root, url=server.url, md5=md5, retries=1,
                             progress=False)
        assert (root / "CIFAR-10-C.tar.part").stat().st_size == 700
        assert not (root / "CIFAR-10-C").exists()
        download_cifar_c("cifar10", root, url=server.url, md5=md5, progress=False,
                         keep_archive=True)
        assert server.requests[-1] == "bytes=700-"
    assert (root / "CIFAR-10-C.tar").read_bytes() == payload
    assert sorted(p.name for p in root.iterdir()) == ["CIFAR-10-C", "CIFAR-10-C.tar"]


def test_server_ignoring_range_restarts(tmp_path, fake_archive):
    payload, md5 = fake_archive
    dest = tmp_path / "x.tar"
    (tmp_path / "x.tar.part").write_bytes(b"stale bytes from elsewhere")
    with Server(payload) as server:
        server.ignore_range = True
        download_file(server.url, dest, md5=md5, progress=False)
    assert dest.read_bytes() == payload


def test_complete_part_is_not_refetched(tmp_path, fake_archive):
    payload, md5 = fake_archive
    (tmp_path / "x.tar.part").write_bytes(payload)
    with Server(payload) as server:
        download_file(server.url, tmp_path / "x.tar", md5=md5, progress=False)
        assert server.requests == [f"bytes={len(payload)}-"]  # answered 416
    assert (tmp_path / "x.tar").read_bytes() == payload


def test_bad_checksum_leaves_nothing(tmp_path, fake_archive):
    payload, md5 = fake_archive
    root = tmp_path / "data"
    with Server(payload) as server:
        with pytest.raises(DownloadError, match=rf"checksum mismatch for .*md5 {md5}, expected "
                                                r"0{32}; removed .*CIFAR-10-C\.tar\.part"):
            download_cifar_c("cifar10", root, url=server.url, md5="0" * 32, progress=False)
    assert list(root.iterdir()) == []


def test_mirror_url_keeps_official_checksum(tmp_path, fake_archive):
    """--url without --md5 is a mirror: the official size/MD5 still apply, so a fake fails."""
    payload, _ = fake_archive
    root = tmp_path / "data"
    with Server(payload) as server:
        with pytest.raises(DownloadError, match=rf"offers {len(payload)} bytes, expected "
                                                rf"{ARCHIVES['cifar10'].size}"):
            download_cifar_c("cifar10", root, url=server.url, progress=False)
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("labels, fog, message", [
    (np.arange(7, dtype=np.uint8), None, "7 labels is not a positive multiple of 5"),
    (np.zeros(10, np.uint8), None, "holds no corruption .npy files"),
    (np.zeros(10, np.uint8), np.zeros((10, 32, 32), np.uint8), r"fog\.npy: shape"),
])
def test_bad_archive_content_leaves_no_folder(tmp_path, labels, fog, message):
    src = tmp_path / "src"
    (src / "CIFAR-10-C").mkdir(parents=True)
    np.save(src / "CIFAR-10-C" / "labels.npy", labels)
    if fog is not None:
        np.save(src / "CIFAR-10-C" / "fog.npy", fog)
    archive = tmp_path / "bad.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(src / "CIFAR-10-C", arcname="CIFAR-10-C")
    payload = archive.read_bytes()
    root = tmp_path / "data"
    with Server(payload) as server:
        with pytest.raises((ValueError, DownloadError), match=message):
            download_cifar_c("cifar10", root, url=server.url, md5=hashlib.md5(payload)
                             .hexdigest(), progress=False)
    assert [p.name for p in root.iterdir()] == ["CIFAR-10-C.tar"]  # verified archive kept


def test_not_a_tar_and_http_errors(tmp_path):
    payload = b"definitely not a tar archive" * 10
    root = tmp_path / "data"
    with Server(payload) as server:
        with pytest.raises(DownloadError, match="cannot extract"):
            download_cifar_c("cifar10", root, url=server.url,
                             md5=hashlib.md5(payload).hexdigest(), progress=False)
        assert not (root / "CIFAR-10-C").exists()
        with pytest.raises(DownloadError, match="HTTP 404"):
            download_file(server.url.replace("CIFAR-10-C.tar", "nothing"), tmp_path / "n",
                          md5=None, progress=False)
    with pytest.raises(ValueError, match="no published corruption archive for dataset "
                                         "'imagenet'"):
        download_cifar_c("imagenet", tmp_path)


def test_unsafe_tar_members_refused(tmp_path):
    archive = tmp_path / "evil.tar"
    outside = tmp_path / "outside.txt"
    (tmp_path / "payload.txt").write_text("x")
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "payload.txt", arcname="../outside.txt")
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(DownloadError, match="cannot extract"):
        download.extract_cifar_c(archive, root, "CIFAR-10-C")
    assert not outside.exists() and list(root.iterdir()) == []
