"""Model table, verified downloads (against a local HTTP server), checkpoint formats and their errors."""
from __future__ import annotations

import hashlib
import logging
import socket

import pytest
import torch

from clip import clip, loading
from clip.loading import download
from clip.model import CLIP, CheckpointError, build_model

OFFICIAL = ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(http_root, data: bytes, name: str = "model.pt") -> str:
    """Put ``data`` on the server under ``/<sha256>/<name>`` (OpenAI's URL layout); return its URL."""
    served, base = http_root
    (served / _sha(data)).mkdir()
    (served / _sha(data) / name).write_bytes(data)
    return f"{base}/{_sha(data)}/{name}"


def test_available_models_are_the_official_nine():
    assert clip.available_models() == OFFICIAL
    for name, url in loading.MODEL_URLS.items():
        assert url.startswith("https://openaipublic.azureedge.net/clip/models/") and len(url.split("/")[-2]) == 64


def test_download_verifies_and_caches(http_root, tmp_path):
    data = b"weights" * 1000
    url = _serve(http_root, data)
    cache = tmp_path / "cache"
    path = download(url, cache)
    assert path == str(cache / "model.pt") and (cache / "model.pt").read_bytes() == data
    assert [p.name for p in cache.iterdir()] == ["model.pt"]  # the temp file was renamed
    (http_root[0] / _sha(data) / "model.pt").unlink()
    assert download(url, cache) == path  # served from the cache now


def test_download_with_explicit_checksum(http_root, tmp_path):
    data = b"vocab"
    (http_root[0] / "bpe.gz").write_bytes(data)
    path = download(f"{http_root[1]}/bpe.gz", tmp_path / "cache", expected_sha256=_sha(data))
    assert open(path, "rb").read() == data


def test_checksum_mismatch_leaves_no_file(http_root, tmp_path):
    url = _serve(http_root, b"good bytes")
    (http_root[0] / _sha(b"good bytes") / "model.pt").write_bytes(b"tampered bytes")
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="SHA256"):
        download(url, cache)
    assert list(cache.iterdir()) == []
    with pytest.raises(RuntimeError, match="not the published"):
        download(url, cache, expected_sha256=_sha(b"tampered bytes!"))
    assert list(cache.iterdir()) == []


def test_corrupted_cache_is_downloaded_again(http_root, tmp_path, caplog):
    data = b"the real file"
    url = _serve(http_root, data)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "model.pt").write_bytes(b"truncated")
    with caplog.at_level(logging.WARNING, logger="clip.loading"):
        path = download(url, cache)
    assert open(path, "rb").read() == data and [p.name for p in cache.iterdir()] == ["model.pt"]
    assert any("damaged or outdated" in r.getMessage() for r in caplog.records)


def test_unreachable_server_names_url_and_destination(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/{'a' * 64}/ViT-B-16.pt"
    with pytest.raises(RuntimeError) as err:
        download(url, tmp_path / "cache")
    message = str(err.value)
    assert url in message and str(tmp_path / "cache" / "ViT-B-16.pt") in message and "a" * 64 in message
    assert not (tmp_path / "cache" / "ViT-B-16.pt").exists()
    assert list((tmp_path / "cache").iterdir()) == []


def test_load_by_name_downloads_through_the_table(http_root, tmp_path, tiny_clip_path, monkeypatch):
    url = _serve(http_root, tiny_clip_path.read_bytes(), "ViT-B-16.pt")
    monkeypatch.setitem(loading.MODEL_URLS, "ViT-B/16", url)
    model, preprocess = clip.load("ViT-B/16", download_root=str(tmp_path / "root"))
    assert isinstance(model, CLIP) and (tmp_path / "root" / "ViT-B-16.pt").is_file()
    monkeypatch.setenv("CLIP_CACHE_DIR", str(tmp_path / "env"))
    clip.load("ViT-B/16")
    assert (tmp_path / "env" / "ViT-B-16.pt").is_file()


def test_unknown_model_name_is_taken_as_a_missing_path():
    with pytest.raises(FileNotFoundError) as err:
        clip.load("ViT-H/99")
    message = str(err.value)
    assert "'ViT-H/99'" in message and "RN50, RN101" in message and "file path" in message
    assert "MODEL.BACKBONE.PATH" in message


def _outputs(model: CLIP):
    text = clip.tokenize(["a photo of a cat", "a diagram"])
    image = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model.encode_image(image), model.encode_text(text), model(image, text)[0]


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")
def test_torchscript_archive_loads_like_the_state_dict(tiny_clip_path, tmp_path):
    """Official files are torch.jit.trace archives with fp16 weights plus int64 metadata entries."""
    state_dict = torch.load(tiny_clip_path)
    module = build_model(state_dict).to(torch.float16)
    for key, value in (("input_resolution", 32), ("context_length", 77), ("vocab_size", 49408)):
        module.__dict__.pop(key, None)  # plain attributes in our CLIP; int64 buffers in the official archives
        module.register_buffer(key, torch.tensor(value))
    example = (torch.randn(1, 3, 32, 32, dtype=torch.float16), clip.tokenize(["a dog"]))
    traced = torch.jit.trace(module, example, check_trace=False)
    archive = tmp_path / "ViT-tiny.pt"
    torch.jit.save(traced, str(archive))
    keys = set(torch.jit.load(str(archive)).state_dict())
    assert {"input_resolution", "vocab_size", "visual.proj"} <= keys

    from_archive, _ = clip.load(str(archive))
    from_state_dict, _ = clip.load(str(tiny_clip_path))
    for a, b in zip(_outputs(from_archive), _outputs(from_state_dict)):
        assert torch.equal(a, b)


def test_jit_true_warns_and_returns_eager_model(tiny_clip_path, caplog):
    with caplog.at_level(logging.WARNING, logger="clip.clip"):
        model, _ = clip.load(str(tiny_clip_path), jit=True)
    assert isinstance(model, CLIP) and not isinstance(model, torch.jit.ScriptModule)
    assert any("jit=True" in r.getMessage() for r in caplog.records)


def test_random_bytes_file_is_rejected(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(CheckpointError, match="garbage.pt is neither a TorchScript archive nor"):
        clip.load(str(path))


def test_foreign_state_dict_is_rejected(tmp_path):
    path = tmp_path / "resnet18.pt"
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.weight": torch.zeros(2, 8)}, path)
    with pytest.raises(CheckpointError, match=r"resnet18.pt: not an OpenAI CLIP state_dict: missing \["):
        clip.load(str(path))


def test_trainer_checkpoint_is_rejected(tmp_path):
    path = tmp_path / "model.pth.tar-2"
    torch.save({"state_dict": {"ctx": torch.zeros(4, 512)}, "epoch": 2}, path)
    with pytest.raises(CheckpointError, match=r"model.pth.tar-2 is not a CLIP state_dict: entries \['state_dict'"):
        clip.load(str(path))


def test_missing_unexpected_and_misshaped_keys_are_reported(tiny_clip_path, tmp_path):
    state_dict = torch.load(tiny_clip_path)
    broken = dict(state_dict)
    del broken["visual.ln_post.bias"]
    broken["visual.prompt_learner.ctx"] = torch.zeros(2, 64)
    path = tmp_path / "broken.pt"
    torch.save(broken, path)
    with pytest.raises(CheckpointError) as err:
        clip.load(str(path))
    message = str(err.value)
    assert "broken.pt" in message and "1 missing keys ['visual.ln_post.bias']" in message
    assert "1 unexpected keys ['visual.prompt_learner.ctx']" in message
    misshaped = dict(state_dict, **{"ln_final.bias": torch.zeros(65)})
    with pytest.raises(CheckpointError, match="size mismatch.*ln_final.bias"):
        build_model(misshaped, source="misshaped.pt")


def test_state_dict_with_metadata_and_1d_logit_scale_loads(tiny_clip_path):
    state_dict = torch.load(tiny_clip_path)
    assert state_dict["logit_scale"].shape == (1,)
    state_dict.update(input_resolution=torch.tensor(32), context_length=torch.tensor(77),
                      vocab_size=torch.tensor(49408))
    model = build_model(state_dict)
    assert model.logit_scale.shape == () and "input_resolution" in state_dict  # the input is not modified
