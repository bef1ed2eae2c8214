"""Fixtures of the clip tests: models loaded once per session, local HTTP servers for downloads (plain files, and
the Hugging Face Hub's file protocol)."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import threading
from pathlib import Path
from typing import Iterator

import pytest
import torch

from clip import clip


@pytest.fixture(scope="session")
def vit_model(vit_b16_32px_path):
    """The ViT-B/16-width parity model as ``clip.load`` returns it on CPU (fp32, eval)."""
    model, _ = clip.load(str(vit_b16_32px_path))
    return model


@pytest.fixture(scope="session")
def tiny_model(tiny_clip_path):
    """The tiny toy CLIP, fp32, frozen (requires_grad False everywhere), eval mode."""
    model, _ = clip.load(str(tiny_clip_path))
    model.requires_grad_(False)
    return model


@pytest.fixture(scope="session")
def clip_forward(fixtures_dir) -> dict:
    return torch.load(fixtures_dir / "clip_forward.pt", weights_only=False)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


class _HubHandler(http.server.BaseHTTPRequestHandler):
    """The part of the Hub's protocol ``hf_hub_download`` uses: ``/{org}/{repo}/resolve/{revision}/{file}`` answers
    with the file, its ETag and the commit it resolved to; a missing file says ``EntryNotFound``, a missing
    repository ``RepoNotFound``. Files live under
    ``root/{org}/{repo}/{file}``; every revision serves the same files from commit ``COMMIT``."""

    root: Path
    COMMIT = "0123456789abcdef0123456789abcdef01234567"
    requests: list

    def log_message(self, *args) -> None:
        pass

    def _answer(self, body: bool) -> None:
        parts = self.path.lstrip("/").split("/")
        self.requests.append(self.path)
        if len(parts) < 5 or parts[2] != "resolve" or not self.root.joinpath(parts[0], parts[1]).is_dir():
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.end_headers()
            return
        path = self.root.joinpath(parts[0], parts[1], *parts[4:])
        if not path.is_file():
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Repo-Commit", self.COMMIT)
            self.end_headers()
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", self.COMMIT)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(body=True)


@contextlib.contextmanager
def _serving(handler) -> Iterator[str]:
    """Run ``handler`` on 127.0.0.1 (random port) for the ``with`` block; gives the base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture()
def fake_hub(tmp_path, monkeypatch) -> Iterator[tuple[Path, list]]:
    """A local stand-in for the Hugging Face Hub, named by ``HF_ENDPOINT``: yields ``(root, requests)``; put a
    repository's files under ``root/ORG/REPO/``. ``requests`` lists the paths asked for."""
    root = tmp_path / "hub"
    root.mkdir()
    requests: list = []
    handler = type("Hub", (_HubHandler,), {"root": root, "requests": requests})
    with _serving(handler) as base:
        monkeypatch.setenv("HF_ENDPOINT", base)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield root, requests


@pytest.fixture()
def http_root(tmp_path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1 (random port): yields ``(folder, base_url)``."""
    root = tmp_path / "served"
    root.mkdir()
    with _serving(functools.partial(_QuietHandler, directory=str(root))) as base:
        yield root, base
