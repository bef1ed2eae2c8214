"""Fixtures of the clip tests: models loaded once per session, a local HTTP server for downloads."""
from __future__ import annotations

import functools
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


@pytest.fixture()
def http_root(tmp_path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1 (random port): yields ``(folder, base_url)``."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
