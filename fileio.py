"""The one way this project writes a file that must never be seen half-written.

Every writer (checkpoints, results, split caches, downloads of CLIP weights and datasets) goes through
:func:`atomic_write`: the bytes go to a hidden temp file in the target's folder, which replaces the target only
once complete (``os.replace`` is atomic within a file system). A killed process leaves at most a
``.<name>.*.tmp`` file, which :func:`remove_stale_temps` clears. Files get the permissions a plain ``open()``
would give (0666 minus the umask, so usually 0644), readable by a lab's group, not ``mkstemp``'s 0600.

A leaf module: it imports only the standard library, so ``clip/``, ``engine/`` and the layers above can share it.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from typing import Any, Callable, List, Union

PathLike = Union[str, "os.PathLike[str]"]
TEMP_SUFFIX = ".tmp"


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: PathLike, write: Callable[[str], Any]) -> None:
    """Create or replace ``path`` with what ``write(temp_path)`` writes; nothing changes if ``write`` raises.

    Args:
        path: the final file; its folder is created if needed.
        write: called with the temp file's path (an empty file in the same folder); may raise to abort
            (e.g. a download whose checksum does not match), and the temp file is then removed.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=TEMP_SUFFIX, dir=folder)
    os.close(fd)
    try:
        write(temp)
        os.chmod(temp, _default_mode())
        os.replace(temp, path)
    except BaseException as err:
        if os.path.exists(temp):
            os.remove(temp)
        if isinstance(err, Exception) and shutil.disk_usage(folder).free < 1 << 20:
            # a full disk surfaces as many things (torch.save: "basic_ios::clear: iostream error"): name it
            raise OSError(errno.ENOSPC, "No space left on device", path) from err
        raise


def write_json(path: PathLike, obj: Any, indent: int = 4) -> None:
    """``obj`` as JSON (``indent`` spaces, the official split files' style), written atomically."""
    def dump(temp: str) -> None:
        with open(temp, "w") as f:
            json.dump(obj, f, indent=indent, separators=(",", ": "))

    atomic_write(path, dump)


def remove_stale_temps(folder: PathLike) -> List[str]:
    """Delete the temp files that killed writers left directly in ``folder``; returns their paths."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return []
    stale = [os.path.join(folder, name) for name in os.listdir(folder)
             if name.startswith(".") and name.endswith(TEMP_SUFFIX)]
    for path in stale:
        os.remove(path)
    return stale
