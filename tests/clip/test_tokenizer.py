"""Tokenizer ids equal the official ones (all 81 parity cases); vocabulary resolution order; laziness."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clip import clip, tokenizer
from clip.tokenizer import BPE_FILENAME, BPETokenizer, get_tokenizer, resolve_bpe_path

REPO = Path(__file__).resolve().parents[2]
CASES = json.loads((REPO.parent / "shared" / "parity" / "tokenizer.json").read_text())["cases"]


@pytest.fixture(scope="module")
def vocab_path() -> Path:
    return Path(os.environ["CLIP_BPE_PATH"])


def test_all_81_cases_are_present():
    assert len(CASES) == 81


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_tokenizer_matches_reference(case):
    tok = get_tokenizer()
    ids = tok.encode(case["text"])
    assert ids == case["bpe_ids"]
    assert tok.decode(ids) == case["decoded"]
    assert len(ids) + 2 == case["n_tokens_with_sot_eot"]
    truncated = clip.tokenize(case["text"], truncate=True)
    assert truncated.shape == (1, 77) and truncated.dtype == torch.int32
    expected = torch.zeros(77, dtype=torch.int32)
    expected[:len(case["tokenize_truncate_true_ids"])] = torch.tensor(case["tokenize_truncate_true_ids"])
    assert torch.equal(truncated[0], expected)
    if case["truncate_false"] == "ok":
        assert torch.equal(clip.tokenize(case["text"]), truncated)
    else:
        with pytest.raises(RuntimeError) as err:
            clip.tokenize(case["text"])
        # official message; the fixture stores its first 200 characters
        assert str(err.value) == f"Input {case['text']} is too long for context length 77"
        assert f"raises RuntimeError: {err.value}".startswith(case["truncate_false"])
        assert truncated[0, -1].item() == tok.eot_id


def test_tokenize_batch_and_context_length(clip_forward):
    tokens = clip.tokenize(clip_forward["texts"])
    assert torch.equal(tokens, clip_forward["tokens"]) and tokens.dtype == clip_forward["tokens"].dtype
    short = clip.tokenize(["a photo of a cat", "dog"], context_length=8)
    assert short.shape == (2, 8) and short[0, 0].item() == 49406 and short[1, 2].item() == 49407


def test_tokenizer_is_built_once():
    assert get_tokenizer() is get_tokenizer()
    assert get_tokenizer().vocab_size == 49408


def test_importing_clip_does_not_read_the_vocabulary(tmp_path):
    env = dict(os.environ, CLIP_BPE_PATH=str(tmp_path / "missing.txt.gz"), PYTHONPATH=str(REPO))
    code = ("import clip\nfrom clip import clip as c, tokenizer as t\n"
            "assert t.get_tokenizer.cache_info().currsize == 0\n"
            "try:\n    c.tokenize('a')\nexcept FileNotFoundError as e:\n    print('lazy', e)\n")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "lazy" in result.stdout and "missing.txt.gz" in result.stdout


def test_env_var_wins(monkeypatch, tmp_path, vocab_path):
    own = tmp_path / "own" / "vocab.txt.gz"
    own.parent.mkdir()
    shutil.copy(vocab_path, own)
    cache = tmp_path / "cache"
    monkeypatch.setenv("CLIP_BPE_PATH", str(own))
    monkeypatch.setenv("CLIP_CACHE_DIR", str(cache))
    monkeypatch.setattr(tokenizer, "BPE_URL", "http://127.0.0.1:9/never")
    assert resolve_bpe_path() == own
    assert not cache.exists()
    monkeypatch.setenv("CLIP_BPE_PATH", str(tmp_path / "nope.gz"))
    with pytest.raises(FileNotFoundError, match="nope.gz"):
        resolve_bpe_path()


def test_cached_vocabulary_is_used_without_network(monkeypatch, tmp_path, vocab_path):
    shutil.copy(vocab_path, tmp_path / BPE_FILENAME)
    monkeypatch.delenv("CLIP_BPE_PATH")
    monkeypatch.setenv("CLIP_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tokenizer, "BPE_URL", f"http://127.0.0.1:9/x/{BPE_FILENAME}")  # unreachable
    assert resolve_bpe_path() == tmp_path / BPE_FILENAME


def test_vocabulary_is_downloaded_into_the_cache(monkeypatch, tmp_path, vocab_path, http_root):
    served, base = http_root
    shutil.copy(vocab_path, served / BPE_FILENAME)
    cache = tmp_path / "cache"
    monkeypatch.delenv("CLIP_BPE_PATH")
    monkeypatch.setenv("CLIP_CACHE_DIR", str(cache))
    monkeypatch.setattr(tokenizer, "BPE_URL", f"{base}/{BPE_FILENAME}")
    path = resolve_bpe_path()
    assert path == cache / BPE_FILENAME and path.read_bytes() == vocab_path.read_bytes()
    assert sorted(p.name for p in cache.iterdir()) == [BPE_FILENAME]  # no temp file left
    assert BPETokenizer(path).encode("a photo of a dog.") == get_tokenizer().encode("a photo of a dog.")
