#!/usr/bin/env python
"""Download, unpack and verify the 15 benchmark datasets in the official CoOp layout, or check a tree.

A dataset is assembled in a scratch folder inside ``--root`` and renamed into place only once the real reader
read it with the official split sizes; a failure leaves nothing but verified downloads (reused by the next run).
Usage, sources and the manual steps: docs/DATASETS.md.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as a script: make `tools`, `datasets` and `engine` importable
    sys.path.insert(0, REPO)

from datasets.counts import DATASET_FOLDERS, EXPECTED_COUNTS  # noqa: E402
from tools.dataset_fetch import PrepareError, Source, obtain, place_archive, place_file  # noqa: E402

SOURCES_FILE = os.path.join(REPO, "tools", "dataset_sources.yaml")
DOWNLOADS_DIRNAME = "_downloads"
SPLITS = ("train", "val", "test")
Counts = Tuple[Optional[int], Optional[int], Optional[int]]


@dataclass(frozen=True)
class DatasetSpec:  # an entry of tools/dataset_sources.yaml (which explains the fields); name = the config name
    name: str
    reader: str
    folder: str
    required: Tuple[str, ...]
    sources: Tuple[Source, ...]
    manual: str = ""
    in_place: Tuple[str, ...] = ()


def load_specs(overrides: Optional[str] = None) -> Dict[str, DatasetSpec]:
    """The table of tools/dataset_sources.yaml; ``overrides`` (``--sources``: JSON, or YAML, of
    ``{dataset: [source, ...]}``) replaces the sources of the datasets it names (mirrors, local servers)."""
    with open(SOURCES_FILE) as f:
        table = yaml.safe_load(f)
    replaced = {}
    if overrides:
        with open(overrides) as f:
            replaced = yaml.safe_load(f)  # JSON is YAML
        if set(replaced) - set(table):
            raise ValueError(f"{overrides}: unknown dataset(s) {sorted(set(replaced) - set(table))}; "
                             f"choose from: {', '.join(table)}")
    return {name: DatasetSpec(name, e["reader"], DATASET_FOLDERS[e["reader"]], tuple(e["required"]),
                              tuple(Source.parse(s) for s in replaced.get(name, e["sources"])),
                              e.get("manual", ""), tuple(e.get("in_place", ()))) for name, e in table.items()}


def resolve_names(names: Iterable[str], specs: Mapping[str, DatasetSpec]) -> List[str]:
    """Config names, reader names (any case) or ``all`` -> config names, in order, without repeats."""
    aliases = {alias.lower(): spec.name for spec in specs.values() for alias in (spec.name, spec.reader)}
    out: List[str] = []
    for name in names:
        if name.lower() != "all" and name.lower() not in aliases:
            raise ValueError(f"unknown dataset {name!r}; choose from: all, {', '.join(specs)}")
        out += [w for w in (specs if name.lower() == "all" else [aliases[name.lower()]]) if w not in out]
    return out


# ------------------------------------------------------------------------------------------------ checking
@dataclass
class CheckReport:
    name: str
    dataset_dir: str
    status: str = "ok"  # the first problem's kind: missing | incomplete | error | counts | files
    counts: Optional[Counts] = None
    expected: Optional[Counts] = None
    missing_files: List[str] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)  # empty: usable as is

    def fail(self, status: str, problem: str) -> None:
        self.status = self.status if self.problems else status
        self.problems.append(problem)


def check_dataset(spec: DatasetSpec, root: str, check_files: bool = True) -> CheckReport:
    """Read ``<root>/<spec.folder>`` exactly as training does (the registered reader) and compare the split sizes
    with the official ones and, with ``check_files``, every referenced image with the disk."""
    from engine.config import get_cfg_default
    from engine.registry import DATASET_REGISTRY

    report = CheckReport(spec.name, os.path.join(root, spec.folder))
    if not os.path.isdir(report.dataset_dir):
        report.fail("missing", f"folder {report.dataset_dir} does not exist")
        return report
    for path in (os.path.join(report.dataset_dir, *rel.split("/")) for rel in spec.required):
        if not os.path.exists(path):
            report.fail("incomplete", f"missing {path}")
    if report.problems:
        return report  # the reader would fail on (or, for a split file, silently re-create) these
    try:
        importlib.import_module(f"datasets.{spec.name}")  # registers the reader
        cfg = get_cfg_default()
        cfg.DATASET.ROOT, cfg.DATASET.NAME = root, spec.reader
        reader = DATASET_REGISTRY.get(spec.reader)(cfg)
    except Exception as err:  # any reader failure is a finding to report, not a crash of the checker
        report.fail("error", f"{spec.reader} reader failed: {type(err).__name__}: {err}")
        return report
    splits = (reader.train_x, reader.val, reader.test)
    report.counts = tuple(None if items is None else len(items) for items in splits)
    report.expected = EXPECTED_COUNTS.get(spec.reader)
    # An expected None is a split that is not compared (no val split; the test-only datasets' train).
    wrong = [f"{split} {got} (expected {want})" for split, got, want in zip(SPLITS, report.counts,
                                                                             report.expected or ())
             if want is not None and got != want]
    if wrong:
        report.fail("counts", "split sizes differ from the official ones: " + ", ".join(wrong))
    if check_files:
        paths = dict.fromkeys(item.impath for items in splits for item in items or ())
        report.missing_files = [path for path in paths if not os.path.exists(path)]
        if report.missing_files:
            report.fail("files", f"{len(report.missing_files)} image file(s) referenced by the splits are missing")
    return report


def format_reports(reports: Sequence[CheckReport], max_list: int = 20) -> str:
    """A row per dataset, then each problem and the exact missing paths."""
    from tabulate import tabulate

    rows = [[r.name, r.dataset_dir, r.status.upper() if r.problems else "ok",
             *(["-" if n is None else f"{n:,}" for n in r.counts] if r.counts else [""] * 3),
             "/".join("-" if n is None else str(n) for n in r.expected) if r.expected else "",
             len(r.missing_files) if r.counts else ""] for r in reports]
    lines = [tabulate(rows, headers=["dataset", "folder", "status", "train", "val", "test", "expected t/v/t",
                                     "missing files"])]
    for r in (r for r in reports if r.problems):
        shown = r.missing_files if max_list <= 0 else r.missing_files[:max_list]
        lines += [f"\n[{r.name}]"] + [f"  {p}" for p in r.problems] + [f"  missing: {p}" for p in shown]
        if len(shown) < len(r.missing_files):
            lines.append(f"  ... and {len(r.missing_files) - len(shown)} more (use --max-list 0 to see all)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ preparing
def _problems(report: CheckReport, limit: int = 5) -> str:
    return "; ".join(report.problems[:limit]) + "".join(f"\n    missing: {p}" for p in report.missing_files[:limit])


def _tidy_downloads(args: argparse.Namespace, fetched: Sequence[str] = ()) -> None:
    """Delete this run's downloads (unless --keep-downloads), then the default download folder if empty."""
    for path in () if args.keep_downloads else fetched:
        if os.path.exists(path):
            os.remove(path)
    if args.own_download_dir and os.path.isdir(args.download_dir) and not os.listdir(args.download_dir):
        os.rmdir(args.download_dir)


def build_dataset_tree(spec: DatasetSpec, args: argparse.Namespace) -> str:
    """Download + unpack into ``<root>/.prepare-<name>-*/<folder>``, verify there, then rename into place;
    raises PrepareError or OSError, leaving only verified downloads."""
    os.makedirs(args.root, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f".prepare-{spec.name}-", dir=args.root)
    staged, target, old = os.path.join(scratch, spec.folder), os.path.join(args.root, spec.folder), ""
    fetched: List[str] = []
    try:
        os.makedirs(staged)
        for i, src in enumerate(spec.sources):
            path = obtain(src, args.download_dir, args.root, fetched.append)
            if src.extract:
                logging.info("Unpacking %s", src.filename)
                place_archive(path, src, os.path.join(scratch, f"unpack{i}"), staged)
            else:
                place_file(path, src, staged)
        report = check_dataset(spec, scratch, args.check_files)
        if report.problems:
            raise PrepareError(f"the unpacked dataset fails the check: {_problems(report)}")
        if os.path.lexists(target):  # --force: set the old folder aside, put it back if the rename fails
            old = os.path.join(scratch, "previous")
            os.replace(target, old)
        try:
            os.replace(staged, target)  # same file system: atomic
        except OSError:
            if old:
                os.replace(old, target)
            raise
    except (PrepareError, OSError) as err:
        kept = [p for p in fetched if os.path.exists(p)]
        raise PrepareError(f"{err}" + (f" (verified downloads kept for a rerun: {', '.join(kept)})" if kept
                                       else "")) from err
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _tidy_downloads(args, fetched)
    return f"prepared {target}"


def prepare_dataset(spec: DatasetSpec, args: argparse.Namespace) -> Tuple[bool, str]:
    """Prepare one dataset: ``(success, message)``. Never leaves a half-built dataset folder."""
    target = os.path.join(args.root, spec.folder)
    if os.path.lexists(target) and not args.force:
        report = check_dataset(spec, args.root, args.check_files)
        if not report.problems:
            return True, f"already prepared: {target} passes the check"
        if not spec.in_place:
            return False, (f"{target} exists but fails the check: {_problems(report)}\n  Fix it, or rerun with "
                           f"--force to rebuild it from scratch (the old folder is replaced).")
    # What the user must lay out (ImageNet's image folders) or download (StanfordCars' archives) first.
    folders = [rel for rel in spec.in_place if not os.path.isdir(os.path.join(target, *rel.split("/")))]
    files = [s.filename for s in spec.sources
             if not s.urls and not os.path.isfile(os.path.join(args.download_dir, s.filename))]
    if folders or files:
        lines = ["needs a manual step.", f"  {spec.manual}"]
        if folders:
            lines.append("  Lay out these folders by hand (or as symbolic links to an existing copy):")
            lines += [f"    {os.path.join(target, *rel.split('/'))}{os.sep}<class folder>/<images>" for rel in folders]
        if files:
            lines.append(f"  Put these files, with exactly these names, in the download folder {args.download_dir}:")
            lines += [f"    {os.path.join(args.download_dir, name)}" for name in files]
        lines.append(f"  Then rerun: python tools/prepare_datasets.py --root {args.root} {spec.name}")
        return False, "\n".join(lines + [f"  The finished tree is {target}{os.sep} (layout: docs/DATASETS.md)."])
    try:
        if not spec.in_place:
            return True, build_dataset_tree(spec, args)
        # The bulk is already in place: add the downloadable files (a few small ones) directly, then check.
        fetched: List[str] = []
        for src in spec.sources:
            if not os.path.exists(os.path.join(target, src.filename)):
                place_file(obtain(src, args.download_dir, args.root, fetched.append), src, target)
        _tidy_downloads(args, fetched)
    except (PrepareError, OSError) as err:
        _tidy_downloads(args)
        return False, str(err)
    report = check_dataset(spec, args.root, args.check_files)
    if report.problems:
        return False, f"{target} fails the check: {_problems(report)}"
    return True, f"completed {target}"


# ------------------------------------------------------------------------------------------------ CLI
def list_sources(specs: Mapping[str, DatasetSpec]) -> str:
    from tabulate import tabulate

    rows = [[spec.name, src.filename, "\n".join(src.urls) or "MANUAL",
             f"md5 {src.md5}" if src.md5 else f"sha256 {src.sha256}" if src.sha256 else "none known",
             src.checksum_origin or "-", "no (no network here)"] for spec in specs.values() for src in spec.sources]
    return tabulate(rows, headers=["dataset", "file", "urls (tried in order)", "checksum", "checksum from",
                                   "verified here"])


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="datasets: all, or the names in "
                                "tools/dataset_sources.yaml (the config names) or their readers' names")
    p.add_argument("names", nargs="*", help="datasets to prepare/check (config or reader names, or 'all')")
    p.add_argument("--root", default=os.environ.get("DATA"), help="the data root (DATASET.ROOT; default: $DATA)")
    p.add_argument("--check", action="store_true", help="only verify the existing tree (default: all datasets)")
    p.add_argument("--no-files", dest="check_files", action="store_false",
                   help="do not test that every image of the splits exists (faster on ImageNet)")
    p.add_argument("--max-list", type=int, default=20, help="missing paths listed per dataset (0 = all)")
    p.add_argument("--download-dir", help=f"where archives are looked for and saved (default: ROOT/"
                                          f"{DOWNLOADS_DIRNAME}); put manual downloads here")
    p.add_argument("--keep-downloads", action="store_true", help="keep the archives after a successful prepare")
    p.add_argument("--force", action="store_true", help="rebuild a dataset whose folder exists but fails the check")
    p.add_argument("--sources", help="JSON file replacing the sources of some datasets (mirrors; tests)")
    p.add_argument("--list-sources", action="store_true", help="print the source table and exit")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Returns the exit status: 0 when every requested dataset is ready (or passes --check)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        specs = load_specs(args.sources)
        names = resolve_names(args.names or ["all"], specs)
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as err:  # a bad --sources file or name
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.list_sources:
        print(list_sources(specs))
        return 0
    if not args.root or not (args.names or args.check):
        print("error: give --root (or set $DATA)" if not args.root else
              "error: name the datasets to prepare (or 'all'), or pass --check", file=sys.stderr)
        return 2
    args.root = os.path.abspath(os.path.expanduser(args.root))
    if args.check:
        reports = [check_dataset(specs[n], args.root, args.check_files) for n in names]
        print(format_reports(reports, args.max_list))
        failed = [r.name for r in reports if r.problems]
    else:
        args.own_download_dir = not args.download_dir  # only the default folder is removed when left empty
        args.download_dir = os.path.abspath(args.download_dir or os.path.join(args.root, DOWNLOADS_DIRNAME))
        failed = []
        for name in names:
            ok, message = prepare_dataset(specs[name], args)
            print(f"[{name}] {'OK' if ok else 'FAILED'}: {message}", flush=True)
            failed += [] if ok else [name]
    print(f"\n{len(names) - len(failed)}/{len(names)} datasets {'OK' if args.check else 'ready'}"
          + (f"; {'problems' if args.check else 'not ready'}: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
