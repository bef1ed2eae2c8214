"""Cached listing of a ``<split_dir>/<class folder>/<image>`` tree (ImageNet and its test variants).

Listing ImageNet's train folder means reading 1,000 directories with 1.28M entries, which takes from seconds
(local disk) to minutes (network file systems) on every start. The listing is therefore cached as JSON in
``<dataset_dir>/index_cache/<tag>.json`` (or ``<DATASET.SPLIT_CACHE_DIR>/<dataset folder>/index_cache/<tag>.json``
when the dataset folder is read-only).

Cache key (checked on every start, without listing any class folder): the names of the visible sub-folders
of ``split_dir`` and, for each, its inode number and modification time (``st_mtime_ns``), i.e. one ``scandir``
plus one ``stat`` per class folder. Adding, removing or renaming an image changes its folder's mtime;
replacing a folder (or re-pointing a symlink to it) changes the inode. Editing an image in place changes
neither, which is fine: the index holds names only. A cache whose key differs is rebuilt and overwritten.
File systems stamp mtimes with a coarse clock (a few ms), so two changes within one tick can share an mtime; a
listing is therefore not cached while any class folder was modified less than ``SETTLE_SECONDS`` ago (e.g.
during extraction): it is simply listed again on the next start.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Dict, List, Optional, Sequence

from fileio import write_json

from .base import visible_entries

logger = logging.getLogger(__name__)

INDEX_VERSION = 1
INDEX_DIRNAME = "index_cache"
SETTLE_SECONDS = 2.0


def folder_signature(split_dir: str) -> Dict[str, List[int]]:
    """``{class folder: [st_ino, st_mtime_ns]}`` for each visible sub-folder (symlinks followed), sorted by name."""
    signature = {}
    with os.scandir(split_dir) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            st = entry.stat()
            signature[entry.name] = [int(st.st_ino), int(st.st_mtime_ns)]
    return dict(sorted(signature.items()))


def scan_class_folders(split_dir: str, folders: Sequence[str]) -> Dict[str, List[str]]:
    """``{folder: sorted visible entry names}``: the uncached listing (one ``listdir`` per folder, no ``stat``)."""
    return {folder: sorted(visible_entries(os.path.join(split_dir, folder))) for folder in folders}


def index_cache_paths(dataset_dir: str, tag: str, cache_root: Optional[str] = None) -> List[str]:
    """Candidate cache files: in the dataset folder, then under ``cache_root`` (``DATASET.SPLIT_CACHE_DIR``)."""
    name = f"{tag}.json"
    paths = [os.path.join(dataset_dir, INDEX_DIRNAME, name)]
    if cache_root:
        root = os.path.abspath(os.path.expanduser(cache_root))
        paths.append(os.path.join(root, os.path.basename(dataset_dir), INDEX_DIRNAME, name))
    return paths


def _load_index(path: str, signature: Dict[str, List[int]]) -> Optional[Dict[str, List[str]]]:
    """The cached listing at ``path`` if it exists and its key equals ``signature``; ``None`` otherwise."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            payload = json.load(f)
        if payload.get("version") != INDEX_VERSION or payload.get("signature") != signature:
            logger.info("Image index %s is out of date; rebuilding it", path)
            return None
        # One newline-joined string per folder: far faster to parse than 1.28M JSON strings.
        return {folder: (joined.split("\n") if joined else []) for folder, joined in payload["files"].items()}
    except (OSError, ValueError, KeyError, AttributeError) as err:
        logger.warning("Ignoring unreadable image index %s (%s); rebuilding it", path, err)
        return None


def _save_index(paths: Sequence[str], payload: dict) -> Optional[str]:
    """Write ``payload`` to the first candidate that accepts it; warn (never fail) if none does."""
    errors = []
    for path in paths:
        try:
            write_json(path, payload)
            return path
        except OSError as err:
            errors.append(f"{path}: {err}")
    logger.warning("Cannot save the image index (%s). Startup will list every folder again next time; set "
                   "DATASET.SPLIT_CACHE_DIR to a writable folder to cache it there.", "; ".join(errors))
    return None


def _cacheable(split_dir: str, signature: Dict[str, List[int]], listing: Dict[str, List[str]]) -> bool:
    """False (with a log line) if a folder is still changing or a name cannot be stored newline-joined."""
    settled_before = time.time_ns() - int(SETTLE_SECONDS * 1e9)
    if any(mtime > settled_before for _, mtime in signature.values()):
        logger.info("Class folders of %s changed in the last %.0f s; not caching the image index yet",
                    split_dir, SETTLE_SECONDS)
        return False
    if any("\n" in name for names in listing.values() for name in names):
        logger.warning("A file name in %s contains a newline; the image index is not cached", split_dir)
        return False
    return True


def list_class_folders(split_dir: str, cache_paths: Sequence[str] = ()) -> Dict[str, List[str]]:
    """``{class folder: sorted image file names}`` for every visible sub-folder of ``split_dir``, cached.

    Args:
        split_dir: folder holding one sub-folder per class.
        cache_paths: candidate cache files (see :func:`index_cache_paths`); empty = no cache.
    Returns:
        folder names in sorted order, each with its visible entries (hidden names skipped) sorted by name.
    """
    signature = folder_signature(split_dir)
    for path in cache_paths:
        cached = _load_index(path, signature)
        if cached is not None:
            logger.info("Loaded the image index of %s from %s", split_dir, path)
            return cached
    listing = scan_class_folders(split_dir, list(signature))
    if cache_paths and _cacheable(split_dir, signature, listing):
        payload = {"version": INDEX_VERSION, "split_dir": split_dir, "signature": signature,
                   "files": {folder: "\n".join(names) for folder, names in listing.items()}}
        saved = _save_index(cache_paths, payload)
        if saved:
            logger.info("Saved the image index of %s to %s", split_dir, saved)
    return listing
