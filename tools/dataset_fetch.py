"""Download, check and unpack dataset files without ever leaving a half-written file or folder in place.

* a download is written to ``<name>.part`` and renamed to ``<name>`` only after its length (Content-Length and
  the table's size) and checksums passed; a failed one is deleted;
* archives are unpacked into a scratch folder (tar with the ``data`` filter, zip with a path check) and their
  members moved into the dataset folder being built; the caller builds that folder in a temporary directory
  and renames it into place only when everything succeeded.
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
from typing import Callable, Dict, List, Optional

from tools.dataset_sources import Source

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
TIMEOUT_S = 60
USER_AGENT = "prompt-clip-prepare-datasets/1.0 (python urllib)"


class PrepareError(RuntimeError):
    """A dataset file could not be fetched, checked or unpacked; the message says what and why."""


# --------------------------------------------------------------------------------------------- fetching
def http_download(url: str, out_path: str) -> None:
    """Stream ``url`` to ``out_path``; a body shorter than its Content-Length is an error (truncated)."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp, open(out_path, "wb") as out:
            expected = resp.headers.get("Content-Length")
            received = 0
            while True:
                chunk = resp.read(CHUNK)
                if not chunk:
                    break
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
    """Download a Google Drive file with ``gdown`` (imported here: only these sources need it)."""
    try:
        import gdown
    except ImportError as err:
        raise PrepareError("gdown is needed for Google Drive files: pip install gdown") from err
    try:
        result = gdown.download(id=file_id, output=out_path, quiet=False)
    except Exception as err:  # gdown raises its own exception types (quota, permission, HTML pages)
        raise PrepareError(f"Google Drive download of {file_id} failed: {type(err).__name__}: {err}") from err
    if not result or not os.path.isfile(out_path):
        raise PrepareError(f"Google Drive download of {file_id} produced no file")


def copy_from_root(rel_path: str, out_path: str, root: str) -> None:
    """Copy ``<root>/<rel_path>`` (a file another dataset already provides)."""
    src = os.path.join(root, *rel_path.split("/"))
    if not os.path.isfile(src):
        raise PrepareError(f"{src} does not exist")
    shutil.copyfile(src, out_path)


def fetch_url(url: str, out_path: str, root: str) -> None:
    """Dispatch on the scheme: ``http(s)://``, ``gdrive:<id>``, ``root:<path under the data root>``."""
    if url.startswith(("http://", "https://")):
        http_download(url, out_path)
    elif url.startswith("gdrive:"):
        gdrive_download(url[len("gdrive:"):], out_path)
    elif url.startswith("root:"):
        copy_from_root(url[len("root:"):], out_path, root)
    else:
        raise PrepareError(f"unsupported URL scheme in {url!r} (http(s)://, gdrive:<id>, root:<path>)")


# --------------------------------------------------------------------------------------------- checking
def file_digests(path: str, names: List[str]) -> Dict[str, str]:
    """Hex digests of ``path`` for each hashlib algorithm in ``names``, in one pass."""
    hashers = {name: hashlib.new(name) for name in names}
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            for h in hashers.values():
                h.update(chunk)
    return {name: h.hexdigest() for name, h in hashers.items()}


def check_file(path: str, src: Source) -> None:
    """Raise :class:`PrepareError` unless ``path`` has the size/checksums of ``src`` and looks like its type."""
    size = os.path.getsize(path)
    if src.size is not None and size != src.size:
        raise PrepareError(f"size mismatch for {src.filename}: expected {src.size} bytes, got {size}")
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    # Dead links and Google Drive quota errors answer with a web page instead of the file.
    if head.startswith((b"<!doctype html", b"<html")) and not src.filename.endswith((".html", ".htm")):
        raise PrepareError(f"{src.filename}: the server sent an HTML page instead of the file")
    wanted = {name: value.lower() for name, value in (("md5", src.md5), ("sha256", src.sha256)) if value}
    if wanted:
        actual = file_digests(path, list(wanted))
        for name, value in wanted.items():
            if actual[name] != value:
                raise PrepareError(f"{name} mismatch for {src.filename}: expected {value}, got {actual[name]}")
    if src.filename.endswith(".json"):
        try:
            with open(path) as f:
                json.load(f)
        except (ValueError, UnicodeDecodeError) as err:
            raise PrepareError(f"{src.filename} is not valid JSON: {err}") from err


def obtain(src: Source, download_dir: str, root: str,
           on_download: Optional[Callable[[str], None]] = None) -> str:
    """Path of a checked local copy of ``src`` in ``download_dir``: reused if there, else fetched.

    Each URL is tried in order; a failed attempt leaves no file. A file already in ``download_dir`` (a manual
    download, or one kept from an earlier run) is checked too; ``on_download(path)`` is called for new files.
    """
    final = os.path.join(download_dir, src.filename)
    if os.path.isfile(final):
        try:
            check_file(final, src)
        except PrepareError as err:
            raise PrepareError(f"{final} is already there but fails the check ({err}); delete it and rerun") from err
        logger.info("Using %s", final)
        return final
    os.makedirs(download_dir, exist_ok=True)
    part = final + ".part"
    errors = []
    for url in src.urls:
        logger.info("Downloading %s from %s", src.filename, url)
        try:
            fetch_url(url, part, root)
            check_file(part, src)
            os.replace(part, final)
            if on_download:
                on_download(final)
            return final
        except PrepareError as err:
            logger.warning("%s: %s", url, err)
            errors.append(f"{url}: {err}")
        finally:
            if os.path.exists(part):
                os.remove(part)
    tried = "\n    ".join(errors) or "no URL known (manual download)"
    raise PrepareError(f"could not obtain {src.filename}:\n    {tried}")


# --------------------------------------------------------------------------------------------- unpacking
def extract_archive(path: str, dest: str) -> None:
    """Unpack a zip or tar (any compression) into ``dest``; members escaping ``dest`` are refused."""
    os.makedirs(dest, exist_ok=True)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                base = os.path.realpath(dest)
                for member in zf.namelist():
                    target = os.path.realpath(os.path.join(dest, member))
                    if os.path.commonpath([base, target]) != base:
                        raise PrepareError(f"{path}: member {member!r} would be written outside {dest}")
                zf.extractall(dest)
        elif tarfile.is_tarfile(path):
            with tarfile.open(path, "r:*") as tf:
                if not hasattr(tarfile, "data_filter"):  # Python < 3.11.4: no extraction filters
                    raise PrepareError("extracting tar archives safely needs Python >= 3.11.4")
                tf.extractall(dest, filter="data")  # refuses absolute paths, '..' and links leaving dest
        else:
            raise PrepareError(f"{path} is neither a zip nor a tar archive")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as err:
        raise PrepareError(f"cannot unpack {path}: {type(err).__name__}: {err}") from err


def _resolve_member(extract_dir: str, member: str) -> str:
    """``"*"`` -> the only top-level folder (or ``extract_dir`` itself); else ``extract_dir/member``."""
    if member == "*":
        entries = [e for e in os.listdir(extract_dir) if not e.startswith(".")]
        only = os.path.join(extract_dir, entries[0]) if len(entries) == 1 else ""
        return only if only and os.path.isdir(only) else extract_dir
    path = os.path.join(extract_dir, *member.split("/"))
    if not os.path.exists(path):
        top = sorted(os.listdir(extract_dir))[:10]
        raise PrepareError(f"the archive has no {member!r} (top-level entries: {top})")
    return path


def _merge_into(src_dir: str, dst_dir: str) -> None:
    """Move every entry of ``src_dir`` into ``dst_dir``; an entry already there is a conflict."""
    os.makedirs(dst_dir, exist_ok=True)
    for entry in os.listdir(src_dir):
        target = os.path.join(dst_dir, entry)
        if os.path.exists(target):
            raise PrepareError(f"{target} would be overwritten by two archives")
        os.replace(os.path.join(src_dir, entry), target)


def place_archive(archive: str, src: Source, scratch: str, dataset_dir: str) -> None:
    """Unpack ``archive`` into ``scratch`` and move the members named in ``src.extract`` into ``dataset_dir``."""
    extract_archive(archive, scratch)
    for member, dest in src.extract:
        path = _resolve_member(scratch, member)
        target = os.path.normpath(os.path.join(dataset_dir, *dest.split("/")))
        if os.path.isdir(path) and (dest == "." or os.path.isdir(target)):
            _merge_into(path, target)
        elif os.path.exists(target):
            raise PrepareError(f"{target} would be overwritten by {src.filename}")
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(path, target)
    shutil.rmtree(scratch, ignore_errors=True)


def place_file(path: str, src: Source, dataset_dir: str, keep_source: bool) -> None:
    """Copy (``keep_source``) or move a downloaded plain file to ``dataset_dir/src.target``."""
    target = os.path.join(dataset_dir, *src.target.split("/"))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if keep_source:
        tmp = target + ".part"
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    else:
        os.replace(path, target)
