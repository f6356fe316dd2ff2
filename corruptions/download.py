"""Download CIFAR-10-C / CIFAR-100-C from Zenodo: resumable, checksummed, extracted atomically.

Steps: stream to ``<root>/<archive>.part`` (HTTP Range resumes an earlier .part and transfers cut
mid-body), check size and MD5, rename to ``<root>/<archive>``, extract into a hidden temp folder,
check the CIFAR-C layout there, and only then move ``CIFAR-10-C/`` into ``root``. A bad checksum
removes the .part; a failed extraction leaves no folder behind.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import socket
import tarfile
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from corruptions.datasets import CifarC

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class RemoteArchive:
    url: str
    md5: str
    size: Optional[int]
    filename: str
    folder: str  # the folder the archive holds


# Zenodo records 2535967 (CIFAR-10-C v1, 9 Jan 2019) and 3555552 (CIFAR-100-C). MD5 as listed on
# the Zenodo record pages (also used by RobustBench's zenodo_download and torchvision-style
# loaders); sizes from the same listings.
ARCHIVES = {
    "cifar10": RemoteArchive(
        url="https://zenodo.org/records/2535967/files/CIFAR-10-C.tar?download=1",
        md5="56bf5dcef84df0e2308c6dcbcbbd8499", size=2_918_471_680,
        filename="CIFAR-10-C.tar", folder="CIFAR-10-C"),
    "cifar100": RemoteArchive(
        url="https://zenodo.org/records/3555552/files/CIFAR-100-C.tar?download=1",
        md5="11f0ed0f1191edbf9fa23466ae6021d3", size=2_918_473_216,
        filename="CIFAR-100-C.tar", folder="CIFAR-100-C"),
}
CHUNK_SIZE = 1 << 20
USER_AGENT = "robust-eval (corruptions.download)"


class DownloadError(RuntimeError):
    """The transfer failed, or the file is not the expected one."""


def file_md5(path: PathLike, chunk_size: int = CHUNK_SIZE) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _content_total(response, offset: int) -> Optional[int]:
    """Total file size from Content-Range (206) or Content-Length (200)."""
    content_range = response.headers.get("Content-Range")
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        if total.isdigit():
            return int(total)
    length = response.headers.get("Content-Length")
    if length and length.isdigit():
        return int(length) + (offset if response.status == 206 else 0)
    return None


def _fetch_once(url: str, part: Path, progress, timeout: float, told: dict) -> Optional[int]:
    """Append the rest of `url` to `part`. Returns the total size if the server told it (also
    kept in told["total"], so an interrupted transfer can report it)."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing left to send: .part is complete already
            return offset
        raise
    with response:
        if offset and response.status != 206:  # server ignores Range: start again
            offset = 0
        total = _content_total(response, offset)
        told["total"] = total
        expected = told.get("expected")
        if total is not None and expected is not None and total != expected:
            raise DownloadError(f"{url}: the server offers {total} bytes, expected {expected}: "
                                f"not the expected file")
        if progress is not None:
            progress.reset(total=total)
            progress.update(offset)
        with open(part, "ab" if offset else "wb") as handle:
            while True:
                chunk = response.read(CHUNK_SIZE)
                if not chunk:
                    break
                handle.write(chunk)
                if progress is not None:
                    progress.update(len(chunk))
    if total is not None and part.stat().st_size < total:
        raise http.client.IncompleteRead(b"", total - part.stat().st_size)
    return total


def download_file(url: str, dest: PathLike, *, md5: Optional[str], size: Optional[int] = None,
                  retries: int = 3, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download `url` to `dest` through `dest`.part, resuming; verify size and MD5; rename.

    An interrupted transfer is retried (resuming) `retries` times, then raises DownloadError
    with the .part kept for a later resume. A size or checksum mismatch removes the .part.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    bar = tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
               disable=not progress)
    told = {"total": size, "expected": size}
    try:
        for attempt in range(retries + 1):
            try:
                _fetch_once(url, part, bar if progress else None, timeout, told)
                break
            except DownloadError:
                with contextlib.suppress(FileNotFoundError):
                    part.unlink()
                raise
            except (http.client.IncompleteRead, ConnectionError, socket.timeout,
                    urllib.error.URLError, http.client.HTTPException, OSError) as error:
                if isinstance(error, urllib.error.HTTPError) and error.code < 500:
                    raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
                if attempt == retries:
                    have = part.stat().st_size if part.exists() else 0
                    total = told["total"] if told["total"] is not None else size
                    raise DownloadError(
                        f"{url}: transfer interrupted after {retries + 1} attempts at {have} of "
                        f"{total if total is not None else '?'} bytes ({error!r}); the partial "
                        f"file {part} is kept: run again to resume") from None
    finally:
        bar.close()
    have = part.stat().st_size
    expected_size = size if size is not None else told["total"]
    if expected_size is not None and have != expected_size:
        part.unlink()
        raise DownloadError(f"{url}: got {have} bytes, expected {expected_size}; removed {part}")
    if md5 is not None:
        digest = file_md5(part)
        if digest != md5.lower():
            part.unlink()
            raise DownloadError(f"checksum mismatch for {url}: md5 {digest}, expected {md5}; "
                                f"removed {part}")
    os.replace(part, dest)
    return dest


def _safe_extract(archive: Path, into: Path) -> None:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")  # refuses absolute paths, '..', devices, links out


def extract_cifar_c(archive: PathLike, root: PathLike, folder: str) -> Path:
    """Extract `archive` and move its `folder` into `root` once the layout checks out."""
    archive, root = Path(archive), Path(root)
    temp = root / f".{folder}.{uuid.uuid4().hex[:8]}.extracting"
    try:
        try:
            _safe_extract(archive, temp)
        except (tarfile.TarError, OSError) as error:
            raise DownloadError(f"{archive}: cannot extract ({error})") from None
        extracted = temp / folder
        if not extracted.is_dir():
            found = sorted(p.name for p in temp.iterdir())
            raise DownloadError(f"{archive} holds no {folder}/ folder (found: {found})")
        data = CifarC(extracted)  # labels present and consistent
        names = data.corruptions()
        if not names:
            raise DownloadError(f"{archive}: {folder}/ holds no corruption .npy files")
        for name in names:  # header check only (memory map): shape and dtype
            data.array(name)
        final = root / folder
        if final.exists():
            raise DownloadError(f"{final} appeared while extracting; not overwriting it")
        os.replace(extracted, final)
        return final
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def download_cifar_c(dataset: str, root: PathLike, *, url: Optional[str] = None,
                     md5: Optional[str] = None, size: Optional[int] = None,
                     keep_archive: bool = False, retries: int = 3, timeout: float = 60.0,
                     progress: bool = True) -> Path:
    """Make ``root/CIFAR-10-C`` (or CIFAR-100-C) exist, downloading it if needed.

    `url` replaces the Zenodo address (a mirror); the official MD5 and size still apply unless
    `md5`/`size` are given too. Returns the folder.
    """
    if dataset not in ARCHIVES:
        raise ValueError(f"no published corruption archive for dataset {dataset!r} "
                         f"(known: {', '.join(ARCHIVES)})")
    spec = ARCHIVES[dataset]
    root = Path(root)
    final = root / spec.folder
    if final.exists():
        CifarC(final)
        return final
    root.mkdir(parents=True, exist_ok=True)
    archive = root / spec.filename
    if not archive.exists():
        download_file(url or spec.url, archive, md5=md5 or spec.md5,
                      size=size if size is not None else (spec.size if url is None or md5 is None
                                                          else None),
                      retries=retries, timeout=timeout, progress=progress)
    elif (md5 or spec.md5) and file_md5(archive) != (md5 or spec.md5):
        raise DownloadError(f"{archive} exists but its md5 is not {md5 or spec.md5}; "
                            f"delete it and run again")
    folder = extract_cifar_c(archive, root, spec.folder)
    if not keep_archive:
        archive.unlink()
    return folder
