"""Tokenizer ids equal the official ones (all 81 parity cases); vocabulary resolution order; laziness."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clip import clip, tokenizer
from clip.tokenizer import BPE_FILENAME, BPE_SHA256, PACKAGED_BPE, VocabularyError, get_tokenizer, resolve_bpe_path

REPO = Path(__file__).resolve().parents[2]
CASES = json.loads((REPO / "tests" / "fixtures" / "tokenizer.json").read_text())["cases"]


@pytest.fixture(scope="module")
def vocab_path() -> Path:
    return PACKAGED_BPE


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
        assert case["truncate_false"].startswith("raises RuntimeError")  # the official behaviour
        with pytest.raises(RuntimeError) as err:
            clip.tokenize(case["text"])
        assert repr(case["text"]) in str(err.value) and f"{case['n_tokens_with_sot_eot']} tokens" in str(err.value)
        assert truncated[0, -1].item() == tok.eot_id


def test_tokenize_batch_and_context_length(clip_forward):
    tokens = clip.tokenize(clip_forward["texts"])
    assert torch.equal(tokens, clip_forward["tokens"]) and tokens.dtype == clip_forward["tokens"].dtype
    short = clip.tokenize(["a photo of a cat", "dog"], context_length=8)
    assert short.shape == (2, 8) and short[0, 0].item() == 49406 and short[1, 2].item() == 49407


def test_vocabulary_size_and_special_ids():
    tok = get_tokenizer()
    assert (tok.vocab_size, tok.sot_id, tok.eot_id) == (49408, 49406, 49407)
    assert tok.decode([tok.sot_id, tok.eot_id]) == "<|startoftext|><|endoftext|>"


def test_importing_clip_does_not_read_the_vocabulary(tmp_path):
    env = dict(os.environ, CLIP_BPE_PATH=str(tmp_path / "missing.txt.gz"), PYTHONPATH=str(REPO))
    code = ("import clip\nfrom clip import clip as c, tokenizer as t\n"
            "assert t.get_tokenizer.cache_info().currsize == 0\n"
            "try:\n    c.tokenize('a')\nexcept t.VocabularyError as e:\n    print('lazy', e)\n")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "lazy" in result.stdout and "missing.txt.gz" in result.stdout


def test_packaged_vocabulary_is_the_official_file(vocab_path, monkeypatch):
    monkeypatch.delenv("CLIP_BPE_PATH", raising=False)
    assert vocab_path.parent == REPO / "clip" and vocab_path.name == BPE_FILENAME
    assert hashlib.sha256(vocab_path.read_bytes()).hexdigest() == BPE_SHA256
    assert resolve_bpe_path() == vocab_path


def test_env_var_wins(monkeypatch, tmp_path, vocab_path):
    own = tmp_path / "own" / "vocab.txt.gz"
    own.parent.mkdir()
    shutil.copy(vocab_path, own)
    monkeypatch.setenv("CLIP_BPE_PATH", str(own))
    assert resolve_bpe_path() == own
    monkeypatch.setenv("CLIP_BPE_PATH", str(tmp_path / "nope.gz"))
    with pytest.raises(VocabularyError, match="nope.gz"):
        resolve_bpe_path()


@pytest.mark.parametrize("use_env", [True, False], ids=["CLIP_BPE_PATH", "packaged"])
def test_a_vocabulary_with_another_checksum_is_refused(use_env, monkeypatch, tmp_path, vocab_path):
    damaged = tmp_path / BPE_FILENAME
    damaged.write_bytes(vocab_path.read_bytes()[:-10])
    if use_env:
        monkeypatch.setenv("CLIP_BPE_PATH", str(damaged))
    else:
        monkeypatch.delenv("CLIP_BPE_PATH", raising=False)
        monkeypatch.setattr(tokenizer, "PACKAGED_BPE", damaged)
    with pytest.raises(VocabularyError) as err:
        resolve_bpe_path()
    message = str(err.value)
    assert str(damaged) in message and BPE_SHA256 in message
    assert ("unset CLIP_BPE_PATH" if use_env else "git checkout -- clip/") in message


def test_tokenizer_and_toy_clip_need_nothing_outside_the_repository(tmp_path):
    """With an empty HOME, no CLIP_BPE_PATH and no network, the packaged vocabulary is what tokenizes, and the
    toy CLIP builder writes weights that load."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIP_", "XDG_"))}
    env.update(HOME=str(home), PYTHONPATH=str(REPO), http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")
    code = ("from clip import clip, tokenizer\n"
            "ids = clip.tokenize('a photo of a dog.')[0]\n"
            "print(tokenizer.resolve_bpe_path(), ids[:7].tolist())\n")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(REPO / "clip" / BPE_FILENAME) in result.stdout
    assert "[49406, 320, 1125, 539, 320, 1929, 269]" in result.stdout
    out = tmp_path / "toy.pt"
    result = subprocess.run([sys.executable, str(REPO / "tools" / "make_toy_clip.py"), str(out)], env=env,
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert clip.load(str(out))[0].visual.input_resolution == 32
    assert list(home.iterdir()) == []  # nothing was cached or downloaded
