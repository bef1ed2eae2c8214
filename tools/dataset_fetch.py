"""Download, verify and unpack dataset files; a file only ever appears under its final name once verified.

A download is written through ``fileio.atomic_write`` and its length and checksums are checked inside the write, so
a failed check removes the temp file and the final name never appears. Archives are unpacked into a scratch folder
(tar with the ``data`` filter, zip with a path check) and their members moved into the dataset folder being built,
which the caller renames into place only when everything succeeded.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, Optional, Tuple

from fileio import atomic_write

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
TIMEOUT_S = 60
USER_AGENT = "prompt-clip-prepare-datasets/1.0 (python urllib)"


class PrepareError(RuntimeError):
    """A dataset file could not be fetched, checked or unpacked; the message says what and why."""


@dataclass(frozen=True)
class Source:
    """One file of a dataset (the fields of tools/dataset_sources.yaml, which explains them)."""

    filename: str
    urls: Tuple[str, ...] = ()
    extract: Tuple[Tuple[str, str], ...] = ()
    md5: Optional[str] = None
    sha256: Optional[str] = None
    size: Optional[int] = None
    checksum_origin: str = ""

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> "Source":
        allowed = {f.name for f in fields(cls)}
        if set(raw) - allowed:
            raise ValueError(f"unknown source key(s) {sorted(set(raw) - allowed)}; allowed: {sorted(allowed)}")
        return cls(**{**raw, "urls": tuple(raw.get("urls", ())), "extract": tuple(map(tuple, raw.get("extract", ())))})


def http_download(url: str, out_path: str) -> None:
    """Stream ``url`` to ``out_path``; a body shorter than its Content-Length is an error (truncated)."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp, open(out_path, "wb") as out:
            expected, received = resp.headers.get("Content-Length"), 0
            for chunk in iter(lambda: resp.read(CHUNK), b""):
                out.write(chunk)
                received += len(chunk)
    except http.client.IncompleteRead as err:
        raise PrepareError(f"truncated download: connection closed after {len(err.partial)} more bytes "
                           f"({err.expected} still expected)") from err
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        raise PrepareError(f"download failed: {err}") from err
    if expected is not None and received != int(expected):
        raise PrepareError(f"truncated download: got {received} bytes, Content-Length says {expected}")


def gdrive_download(file_id: str, out_path: str) -> None:
    try:
        import gdown  # only Google Drive sources need it
    except ImportError as err:
        raise PrepareError("gdown is needed for Google Drive files: pip install gdown") from err
    try:
        result = gdown.download(id=file_id, output=out_path, quiet=False)
    except Exception as err:  # gdown raises its own exception types (quota, permission, HTML pages)
        raise PrepareError(f"Google Drive download of {file_id} failed: {type(err).__name__}: {err}") from err
    if not result or not os.path.isfile(out_path):
        raise PrepareError(f"Google Drive download of {file_id} produced no file")


def fetch_url(url: str, out_path: str, root: str) -> None:
    """``http(s)://``, ``gdrive:<id>`` or ``root:<path under the data root>`` -> ``out_path``."""
    if url.startswith(("http://", "https://")):
        http_download(url, out_path)
    elif url.startswith("gdrive:"):
        gdrive_download(url[len("gdrive:"):], out_path)
    elif url.startswith("root:"):
        src = os.path.join(root, *url[len("root:"):].split("/"))
        if not os.path.isfile(src):
            raise PrepareError(f"{src} does not exist")
        shutil.copyfile(src, out_path)
    else:
        raise PrepareError(f"unsupported URL scheme in {url!r} (http(s)://, gdrive:<id>, root:<path>)")


def check_file(path: str, src: Source) -> None:
    """Raise :class:`PrepareError` unless ``path`` has the size and checksums of ``src`` and looks like its type."""
    size = os.path.getsize(path)
    if src.size is not None and size != src.size:
        raise PrepareError(f"size mismatch for {src.filename}: expected {src.size} bytes, got {size}")
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    # Dead links and Google Drive quota errors answer with a web page instead of the file.
    if head.startswith((b"<!doctype html", b"<html")) and not src.filename.endswith((".html", ".htm")):
        raise PrepareError(f"{src.filename}: the server sent an HTML page instead of the file")
    for name, value in (("md5", src.md5), ("sha256", src.sha256)):
        if value:
            with open(path, "rb") as f:
                got = hashlib.file_digest(f, name).hexdigest()
            if got != value.lower():
                raise PrepareError(f"{name} mismatch for {src.filename}: expected {value.lower()}, got {got}")
    if src.filename.endswith(".json"):
        try:
            with open(path) as f:
                json.load(f)
        except (ValueError, UnicodeDecodeError) as err:
            raise PrepareError(f"{src.filename} is not valid JSON: {err}") from err


def obtain(src: Source, download_dir: str, root: str, on_download: Optional[Callable[[str], None]] = None) -> str:
    """Path of a checked copy of ``src`` in ``download_dir``: the file already there (a manual download or one
    kept from an earlier run, checked too), else fetched from each URL in turn; ``on_download`` gets new files."""
    final = os.path.join(download_dir, src.filename)
    if os.path.isfile(final):
        try:
            check_file(final, src)
        except PrepareError as err:
            raise PrepareError(f"{final} is already there but fails the check ({err}); delete it and rerun") from err
        logger.info("Using %s", final)
        return final
    errors = []
    for url in src.urls:
        logger.info("Downloading %s from %s", src.filename, url)
        try:
            atomic_write(final, lambda temp: (fetch_url(url, temp, root), check_file(temp, src)))
        except PrepareError as err:
            logger.warning("%s: %s", url, err)
            errors.append(f"{url}: {err}")
            continue
        if on_download:
            on_download(final)
        return final
    tried = "\n    ".join(errors) or "no URL known (manual download)"
    raise PrepareError(f"could not obtain {src.filename}:\n    {tried}")


def extract_archive(path: str, dest: str) -> None:
    """Unpack a zip or tar (any compression) into ``dest``; members escaping ``dest`` are refused."""
    os.makedirs(dest, exist_ok=True)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                base = os.path.realpath(dest)
                for member in zf.namelist():
                    if os.path.commonpath([base, os.path.realpath(os.path.join(dest, member))]) != base:
                        raise PrepareError(f"{path}: member {member!r} would be written outside {dest}")
                zf.extractall(dest)
        elif tarfile.is_tarfile(path):
            with tarfile.open(path, "r:*") as tf:
                if not hasattr(tarfile, "data_filter"):  # Python < 3.11.4 has no extraction filters
                    raise PrepareError("extracting tar archives safely needs Python >= 3.11.4")
                tf.extractall(dest, filter="data")  # refuses absolute paths, '..' and links leaving dest
        else:
            raise PrepareError(f"{path} is neither a zip nor a tar archive")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as err:
        raise PrepareError(f"cannot unpack {path}: {type(err).__name__}: {err}") from err


def place_archive(archive: str, src: Source, scratch: str, dataset_dir: str) -> None:
    """Unpack ``archive`` into ``scratch`` and move the members named in ``src.extract`` into ``dataset_dir``;
    a folder merges into an existing one, but nothing is ever overwritten."""
    extract_archive(archive, scratch)
    for member, dest in src.extract:
        if member == "*":
            entries = [e for e in os.listdir(scratch) if not e.startswith(".")]
            only = os.path.join(scratch, entries[0]) if len(entries) == 1 else ""
            path = only if only and os.path.isdir(only) else scratch
        else:
            path = os.path.join(scratch, *member.split("/"))
            if not os.path.exists(path):
                top = sorted(os.listdir(scratch))[:10]
                raise PrepareError(f"the archive has no {member!r} (top-level entries: {top})")
        target = os.path.normpath(os.path.join(dataset_dir, *dest.split("/")))
        merge = os.path.isdir(path) and (dest == "." or os.path.isdir(target))
        moves = ([(os.path.join(path, e), os.path.join(target, e)) for e in os.listdir(path)] if merge
                 else [(path, target)])
        for old, new in moves:
            if os.path.exists(new):
                raise PrepareError(f"{new} would be overwritten by {src.filename}")
            os.makedirs(os.path.dirname(new), exist_ok=True)
            os.replace(old, new)
    shutil.rmtree(scratch, ignore_errors=True)


def place_file(path: str, src: Source, dataset_dir: str) -> None:
    """Copy a downloaded plain file into ``dataset_dir`` (the download stays for the caller to keep or delete)."""
    atomic_write(os.path.join(dataset_dir, src.filename), lambda temp: shutil.copyfile(path, temp))
