"""Verify a prepared dataset tree through the real readers: presence, split sizes, every referenced image.

A dataset is read exactly as training reads it (``Reader(cfg)`` with ``DATASET.ROOT``/``NAME`` set), so a tree
that passes here is one the trainers can load. Expected sizes come from ``datasets.counts.EXPECTED_COUNTS``.
"""
from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from tools.dataset_sources import DatasetSpec

logger = logging.getLogger(__name__)

Counts = Tuple[Optional[int], Optional[int], Optional[int]]
SPLITS = ("train", "val", "test")


@dataclass
class CheckReport:
    """Outcome of checking one dataset; ``problems`` is empty when it is usable as is."""

    name: str
    dataset_dir: str
    status: str = "ok"  # ok | missing | incomplete | error | counts | files
    counts: Optional[Counts] = None
    expected: Optional[Counts] = None
    missing_files: List[str] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, status: str, problem: str) -> None:
        """Record a problem; the first one sets the status shown in the table."""
        if self.ok:
            self.status = status
        self.problems.append(problem)


def load_expected_counts() -> Dict[str, Counts]:
    """``{reader name: (train, val, test)}`` from ``datasets.counts`` (empty, with a warning, if absent)."""
    try:
        from datasets.counts import EXPECTED_COUNTS
    except ImportError as err:
        logger.warning("datasets.counts is not importable (%s): split sizes are not compared", err)
        return {}
    return {name: tuple(counts) for name, counts in EXPECTED_COUNTS.items()}  # type: ignore[misc]


def read_reader_splits(spec: DatasetSpec, root: str) -> Tuple[list, Optional[list], list]:
    """``(train_x, val, test)`` of the registered reader ``spec.reader`` built on ``root``."""
    from engine.config import get_cfg_default
    from engine.registry import DATASET_REGISTRY

    importlib.import_module(f"datasets.{spec.name}")  # module name = config name; registers the reader
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = root
    cfg.DATASET.NAME = spec.reader
    reader = DATASET_REGISTRY.get(spec.reader)(cfg)
    return list(reader.train_x), None if reader.val is None else list(reader.val), list(reader.test)


def missing_image_files(splits: Sequence[Optional[list]]) -> List[str]:
    """Every distinct ``impath`` of the splits that does not exist, in first-seen order."""
    seen = set()
    missing = []
    for items in splits:
        for item in items or ():
            if item.impath not in seen:
                seen.add(item.impath)
                if not os.path.exists(item.impath):
                    missing.append(item.impath)
    return missing


def _compare_counts(report: CheckReport, expected: Optional[Counts]) -> None:
    """A split whose expected size is ``None`` (no val split; test-only train) is not compared."""
    report.expected = expected
    if expected is None or report.counts is None:
        return
    wrong = [f"{split} {got} (expected {want})" for split, got, want in zip(SPLITS, report.counts, expected)
             if want is not None and got != want]
    if wrong:
        report.fail("counts", "split sizes differ from the official ones: " + ", ".join(wrong))


def check_dataset(spec: DatasetSpec, root: str, expected: Mapping[str, Counts],
                  check_files: bool = True) -> CheckReport:
    """Check ``<root>/<spec.folder>``: folder, required paths, reader, split sizes and (optionally) images."""
    root = os.path.abspath(os.path.expanduser(root))
    dataset_dir = os.path.join(root, spec.folder)
    report = CheckReport(spec.name, dataset_dir)
    if not os.path.isdir(dataset_dir):
        report.fail("missing", f"folder {dataset_dir} does not exist")
        return report
    absent = [os.path.join(dataset_dir, *rel.split("/")) for rel in spec.required]
    absent = [path for path in absent if not os.path.exists(path)]
    if absent:
        for path in absent:
            report.fail("incomplete", f"missing {path}")
        return report  # the reader would fail on (or, for a split file, silently re-create) these
    try:
        train, val, test = read_reader_splits(spec, root)
    except Exception as err:  # any reader failure is a finding to report, not a crash of the checker
        report.fail("error", f"{spec.reader} reader failed: {type(err).__name__}: {err}")
        return report
    report.counts = (len(train), None if val is None else len(val), len(test))
    _compare_counts(report, expected.get(spec.reader))
    if check_files:
        report.missing_files = missing_image_files((train, val, test))
        if report.missing_files:
            report.fail("files", f"{len(report.missing_files)} image file(s) referenced by the splits are missing")
    return report


def _fmt(counts: Optional[Counts]) -> List[str]:
    if counts is None:
        return ["", "", ""]
    return ["-" if n is None else f"{n:,}" for n in counts]


def format_reports(reports: Sequence[CheckReport], max_list: int = 20) -> str:
    """A table (one row per dataset) followed by each problem and the exact missing paths."""
    from tabulate import tabulate

    rows = []
    for r in reports:
        expected = "/".join("-" if n is None else str(n) for n in r.expected) if r.expected else ""
        rows.append([r.name, r.dataset_dir, r.status.upper() if not r.ok else "ok", *_fmt(r.counts), expected,
                     len(r.missing_files) if r.counts else ""])
    headers = ["dataset", "folder", "status", "train", "val", "test", "expected t/v/t", "missing files"]
    lines = [tabulate(rows, headers=headers)]
    for r in reports:
        if r.ok:
            continue
        lines.append(f"\n[{r.name}]")
        lines += [f"  {problem}" for problem in r.problems]
        shown = r.missing_files if max_list <= 0 else r.missing_files[:max_list]
        lines += [f"  missing: {path}" for path in shown]
        if len(shown) < len(r.missing_files):
            lines.append(f"  ... and {len(r.missing_files) - len(shown)} more (use --max-list 0 to see all)")
    return "\n".join(lines)
