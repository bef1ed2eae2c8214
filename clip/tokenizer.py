"""Byte-level BPE tokenizer producing the same ids as OpenAI CLIP's ``SimpleTokenizer``.

The vocabulary (``bpe_simple_vocab_16e6.txt.gz``) ships inside this package, as in OpenAI's; the
``CLIP_BPE_PATH`` environment variable may name another copy. Either file must have the official SHA256, so a
damaged or different vocabulary can never silently change token ids. Nothing is read at import time:
``get_tokenizer()`` builds one instance on first use and keeps it.
"""
from __future__ import annotations

import functools
import gzip
import html
import logging
import os
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

import ftfy
import regex

logger = logging.getLogger(__name__)

BPE_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
PACKAGED_BPE = Path(__file__).resolve().with_name(BPE_FILENAME)
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
BPE_ENV = "CLIP_BPE_PATH"

SOT, EOT = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"
# The official vocabulary uses the first 48894 merges of the file (after its version line): with 512 byte
# symbols and 2 specials that makes 49408 ids.
NUM_MERGES = 49152 - 256 - 2

# Word splitting of the official tokenizer (special tokens, English contractions, letter runs, single digits,
# other non-space runs); part of the id contract, applied to lower-cased text.
WORD_PATTERN = regex.compile(
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
    regex.IGNORECASE,
)


@functools.lru_cache(maxsize=None)
def byte_symbols() -> Dict[int, str]:
    """A reversible byte -> printable character table (GPT-2's): printable Latin-1 bytes map to themselves,
    the remaining bytes to the characters from U+0100 on, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in set(printable)]
    # insertion order = vocabulary order: printable bytes first, then the shifted ones
    table = {b: chr(b) for b in printable}
    table.update({b: chr(256 + n) for n, b in enumerate(others)})
    return table


def normalize_text(text: str) -> str:
    """ftfy repair, HTML unescaping (twice, as the official tokenizer), whitespace collapse, lower case."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


class BPETokenizer:
    """Byte-level BPE with the CLIP vocabulary. ``encode`` returns ids without SOT/EOT."""

    def __init__(self, bpe_path: str | os.PathLike) -> None:
        with gzip.open(bpe_path, "rt", encoding="utf-8") as handle:
            lines = handle.read().split("\n")
        merges = [tuple(line.split()) for line in lines[1:NUM_MERGES + 1]]
        symbols = list(byte_symbols().values())
        vocab = symbols + [s + END_OF_WORD for s in symbols] + ["".join(m) for m in merges] + [SOT, EOT]
        self.encoder: Dict[str, int] = {token: i for i, token in enumerate(vocab)}
        self.decoder: Dict[int, str] = {i: token for token, i in self.encoder.items()}
        self.merge_rank: Dict[Tuple[str, str], int] = {pair: i for i, pair in enumerate(merges)}
        self.byte_decoder = {sym: b for b, sym in byte_symbols().items()}
        self._word_cache: Dict[str, List[str]] = {SOT: [SOT], EOT: [EOT]}

    @property
    def sot_id(self) -> int:
        return self.encoder[SOT]

    @property
    def eot_id(self) -> int:
        return self.encoder[EOT]

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def _merge_word(self, word: str) -> List[str]:
        """Apply the merges to one pre-split word (already mapped to byte symbols), lowest rank first."""
        cached = self._word_cache.get(word)
        if cached is not None:
            return cached
        parts = list(word[:-1]) + [word[-1] + END_OF_WORD]
        while len(parts) > 1:
            ranked = [(self.merge_rank.get(pair, NUM_MERGES), i) for i, pair in enumerate(zip(parts, parts[1:]))]
            best_rank, best = min(ranked)
            if best_rank == NUM_MERGES:  # no adjacent pair is a known merge
                break
            left, right = parts[best], parts[best + 1]
            merged: List[str] = []
            i = 0
            while i < len(parts):  # merge every occurrence of (left, right), left to right
                if i + 1 < len(parts) and parts[i] == left and parts[i + 1] == right:
                    merged.append(left + right)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self._word_cache[word] = parts
        return parts

    def encode(self, text: str) -> List[int]:
        """Token ids of ``text`` (normalised first), without SOT/EOT."""
        symbols = byte_symbols()
        ids: List[int] = []
        for word in WORD_PATTERN.findall(normalize_text(text)):
            mapped = "".join(symbols[b] for b in word.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self._merge_word(mapped))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; word ends become spaces, invalid UTF-8 is replaced."""
        joined = "".join(self.decoder[int(i)] for i in ids)
        raw = bytes(self.byte_decoder[ch] for ch in joined)
        return raw.decode("utf-8", errors="replace").replace(END_OF_WORD, " ")


class VocabularyError(RuntimeError):
    """The BPE vocabulary file is missing or is not CLIP's."""


def resolve_bpe_path() -> Path:
    """The vocabulary file: ``$CLIP_BPE_PATH`` if set, else the copy packaged with ``clip/``; SHA256-checked.

    Raises:
        VocabularyError: the file does not exist or its SHA256 is not the official one (the message names the
            file and how to get an intact copy).
    """
    from .loading import sha256_of  # loading imports torch; keep this module light to import

    env = os.environ.get(BPE_ENV)
    path = Path(env).expanduser() if env else PACKAGED_BPE
    origin = f"{BPE_ENV}={env}" if env else "the vocabulary packaged with clip/"
    repair = (f"unset {BPE_ENV} to use the packaged copy, or point it at an intact file" if env else
              f"restore it from the repository (git checkout -- clip/{BPE_FILENAME})")
    if not path.is_file():
        raise VocabularyError(f"{origin}: no file at {path}; {repair}")
    found = sha256_of(path)
    if found != BPE_SHA256:
        raise VocabularyError(f"{origin}: {path} has SHA256 {found}, but CLIP's BPE vocabulary has {BPE_SHA256} "
                              f"(a damaged or different file would change every token id); {repair}")
    return path


@functools.lru_cache(maxsize=1)
def get_tokenizer() -> BPETokenizer:
    """The shared tokenizer, built on first use."""
    path = resolve_bpe_path()
    logger.debug("loading the BPE vocabulary from %s", path)
    return BPETokenizer(path)
