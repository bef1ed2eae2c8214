"""The golden fixtures are intact: every file of tests/fixtures has the SHA256 recorded when it was made."""
from __future__ import annotations

import hashlib
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _recorded() -> dict:
    lines = (FIXTURES / "MANIFEST.sha256").read_text().splitlines()
    return {name.removeprefix("./"): digest for digest, name in (line.split(maxsplit=1) for line in lines)}


def test_every_golden_file_is_listed_and_unchanged():
    recorded = _recorded()
    present = {str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*")
               if p.is_file() and p.name not in ("MANIFEST.sha256", "README.md")}
    assert present == set(recorded), (sorted(present - set(recorded)), sorted(set(recorded) - present))
    changed = [name for name, digest in recorded.items()
               if hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest() != digest]
    assert not changed, f"golden files differ from what the official code wrote: {changed}"
