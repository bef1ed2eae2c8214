#!/usr/bin/env python
"""Download, unpack and verify the 15 benchmark datasets in the official CoOp layout, or check a tree.

Usage:
    python tools/prepare_datasets.py --root $DATA caltech101 oxford_pets      # prepare some datasets
    python tools/prepare_datasets.py --root $DATA all                         # prepare all 15
    python tools/prepare_datasets.py --root $DATA --check [names...]          # verify only (default: all)
    python tools/prepare_datasets.py --list-sources                           # where each file comes from

Names are the config names (configs/datasets/<name>.yaml) or the reader names (Caltech101), or ``all``.
A dataset is built in a temporary folder inside ``--root`` and renamed into place only once every file was
downloaded, checked and unpacked and the reader sees the official split sizes: a failure leaves nothing behind
except verified archives in the download folder (reused by the next run). Datasets that need a manual step
(ImageNet's licence, StanfordCars' dead links) print exactly what to put where and exit non-zero.
See docs/DATASETS.md.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `tools`, `datasets` and `engine` importable
    sys.path.insert(0, str(REPO))

from tools.dataset_check import CheckReport, Counts, check_dataset, format_reports, load_expected_counts  # noqa: E402
from tools.dataset_fetch import PrepareError, obtain, place_archive, place_file  # noqa: E402
from tools.dataset_sources import (DATASETS, VERIFIED_HERE, DatasetSpec, Source,  # noqa: E402
                                   load_source_overrides, resolve_names)

logger = logging.getLogger("prepare_datasets")

DOWNLOADS_DIRNAME = "_downloads"


@dataclass
class Options:
    """What the command line decides for every dataset."""

    root: str
    download_dir: str
    force: bool = False
    keep_downloads: bool = False
    verify: bool = True
    check_files: bool = True
    own_download_dir: bool = True  # the default ROOT/_downloads: removed when empty


# ------------------------------------------------------------------------------------------------ manual steps
def manual_instructions(spec: DatasetSpec, opts: Options, files: Sequence[Source] = (),
                        folders: Sequence[str] = ()) -> str:
    """What the user has to download and the exact paths where it must go."""
    target = os.path.join(opts.root, spec.folder)
    lines = ["needs a manual step.", f"  {spec.manual}"]
    if folders:
        lines.append("  Lay out these folders by hand (or as symbolic links to an existing copy):")
        lines += [f"    {os.path.join(target, *rel.split('/'))}{os.sep}<class folder>/<images>" for rel in folders]
    if files:
        lines.append(f"  Put these files, with exactly these names, in the download folder {opts.download_dir}:")
        lines += [f"    {os.path.join(opts.download_dir, src.filename)}" for src in files]
    lines.append(f"  Then rerun: python tools/prepare_datasets.py --root {opts.root} {spec.name}")
    lines.append(f"  The finished tree is {target}{os.sep} (layout: docs/DATASETS.md).")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ preparing
def _report_problems(report: CheckReport, limit: int = 5) -> str:
    text = "; ".join(report.problems[:limit])
    missing = report.missing_files[:limit]
    return text + ("".join(f"\n    missing: {path}" for path in missing))


def _discard_downloads(fetched: List[str], opts: Options) -> None:
    """Delete the archives this run downloaded (unless --keep-downloads) and an empty download folder."""
    if not opts.keep_downloads:
        for path in fetched:
            if os.path.exists(path):
                os.remove(path)
    _remove_empty_download_dir(opts)


def _remove_empty_download_dir(opts: Options) -> None:
    if opts.own_download_dir and os.path.isdir(opts.download_dir) and not os.listdir(opts.download_dir):
        os.rmdir(opts.download_dir)


def _install(staged: str, target: str, scratch: str) -> None:
    """Rename ``staged`` to ``target`` (same file system: atomic); an old ``target`` (--force) is set aside."""
    old = os.path.join(scratch, "previous")
    if os.path.lexists(target):
        os.replace(target, old)
    try:
        os.replace(staged, target)
    except OSError:
        if os.path.lexists(old):
            os.replace(old, target)
        raise


def _fill(spec: DatasetSpec, dataset_dir: str, scratch: str, opts: Options, fetched: List[str]) -> None:
    """Obtain every source and put it into ``dataset_dir`` (archives unpacked via ``scratch``)."""
    for i, src in enumerate(spec.sources):
        path = obtain(src, opts.download_dir, opts.root, fetched.append)
        if src.is_archive:
            logger.info("Unpacking %s", src.filename)
            place_archive(path, src, os.path.join(scratch, f"unpack{i}"), dataset_dir)
        else:
            place_file(path, src, dataset_dir, keep_source=True)


def build_dataset_tree(spec: DatasetSpec, opts: Options, expected: Mapping[str, Counts]) -> Tuple[bool, str]:
    """Download + unpack into ``<root>/.prepare-<name>-*/<folder>``, verify there, then rename into place."""
    os.makedirs(opts.root, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f".prepare-{spec.name}-", dir=opts.root)
    staged = os.path.join(scratch, spec.folder)
    fetched: List[str] = []
    try:
        os.makedirs(staged)
        _fill(spec, staged, scratch, opts, fetched)
        if opts.verify:
            report = check_dataset(spec, scratch, expected, opts.check_files)
            if not report.ok:
                raise PrepareError(f"the unpacked dataset fails the check: {_report_problems(report)}")
        _install(staged, os.path.join(opts.root, spec.folder), scratch)
    except (PrepareError, OSError) as err:
        kept = [p for p in fetched if os.path.exists(p)]
        hint = f" (verified downloads kept for a rerun: {', '.join(kept)})" if kept else ""
        _remove_empty_download_dir(opts)
        return False, f"{err}{hint}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _discard_downloads(fetched, opts)
    return True, f"prepared {os.path.join(opts.root, spec.folder)}"


def complete_in_place(spec: DatasetSpec, opts: Options, expected: Mapping[str, Counts]) -> Tuple[bool, str]:
    """A dataset whose bulk the user lays out (ImageNet): check those folders, add the downloadable files."""
    target = os.path.join(opts.root, spec.folder)
    absent = [rel for rel in spec.in_place if not os.path.isdir(os.path.join(target, *rel.split("/")))]
    if absent:
        return False, manual_instructions(spec, opts, folders=absent)
    fetched: List[str] = []
    try:
        for src in spec.sources:
            if not os.path.exists(os.path.join(target, *src.target.split("/"))):
                place_file(obtain(src, opts.download_dir, opts.root, fetched.append), src, target, keep_source=True)
    except (PrepareError, OSError) as err:
        _remove_empty_download_dir(opts)
        return False, str(err)
    _discard_downloads(fetched, opts)
    report = check_dataset(spec, opts.root, expected, opts.check_files) if opts.verify else None
    if report is not None and not report.ok:
        return False, f"{target} fails the check: {_report_problems(report)}"
    return True, f"completed {target}"


def prepare_dataset(spec: DatasetSpec, opts: Options, expected: Mapping[str, Counts]) -> Tuple[bool, str]:
    """Prepare one dataset; returns ``(success, message)``. Never leaves a half-built dataset folder."""
    target = os.path.join(opts.root, spec.folder)
    if os.path.lexists(target) and not opts.force:
        report = check_dataset(spec, opts.root, expected, opts.check_files)
        if report.ok:
            return True, f"already prepared: {target} passes the check"
        if not spec.in_place:
            return False, (f"{target} exists but fails the check: {_report_problems(report)}\n  Fix it, or "
                           f"rerun with --force to rebuild it from scratch (the old folder is replaced).")
    if spec.in_place:
        return complete_in_place(spec, opts, expected)
    manual = [s for s in spec.sources if s.is_manual and not os.path.isfile(os.path.join(opts.download_dir,
                                                                                         s.filename))]
    if manual:
        return False, manual_instructions(spec, opts, files=manual)
    return build_dataset_tree(spec, opts, expected)


# ------------------------------------------------------------------------------------------------ CLI
def list_sources(specs: Mapping[str, DatasetSpec]) -> str:
    """One row per source file: URLs, checksum and where it comes from, and whether it was verified here."""
    from tabulate import tabulate

    rows = []
    for spec in specs.values():
        for src in spec.sources:
            checksum = f"md5 {src.md5}" if src.md5 else f"sha256 {src.sha256}" if src.sha256 else "none known"
            rows.append([spec.name, src.filename, "\n".join(src.urls) or "MANUAL", checksum,
                         src.checksum_origin or "-", "yes" if VERIFIED_HERE else "no (no network here)"])
    return tabulate(rows, headers=["dataset", "file", "urls (tried in order)", "checksum", "checksum from",
                                   "verified here"])


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"datasets: all, {', '.join(DATASETS)}")
    p.add_argument("names", nargs="*", help="datasets to prepare/check (config or reader names, or 'all')")
    p.add_argument("--root", default=os.environ.get("DATA"), help="the data root (DATASET.ROOT; default: $DATA)")
    p.add_argument("--check", action="store_true", help="only verify the existing tree (default: all datasets)")
    p.add_argument("--no-files", "--counts-only", dest="check_files", action="store_false",
                   help="do not test that every image of the splits exists (faster on ImageNet)")
    p.add_argument("--max-list", type=int, default=20, help="missing paths listed per dataset (0 = all)")
    p.add_argument("--download-dir", help=f"where archives are looked for and saved (default: ROOT/"
                                          f"{DOWNLOADS_DIRNAME}); put manual downloads here")
    p.add_argument("--keep-downloads", action="store_true", help="keep the archives after a successful prepare")
    p.add_argument("--force", action="store_true", help="rebuild a dataset whose folder exists but fails the check")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip the reader check after unpacking")
    p.add_argument("--sources", help="JSON file replacing the sources of some datasets (mirrors; tests)")
    p.add_argument("--list-sources", action="store_true", help="print the source table and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and the final report")
    return p.parse_args(argv)


def _run_check(names: List[str], specs: Mapping[str, DatasetSpec], args: argparse.Namespace,
               expected: Mapping[str, Counts]) -> int:
    reports = [check_dataset(specs[n], args.root, expected, args.check_files) for n in names]
    print(format_reports(reports, args.max_list))
    bad = [r.name for r in reports if not r.ok]
    print(f"\n{len(reports) - len(bad)}/{len(reports)} datasets OK" + (f"; problems: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status (0 = every requested dataset is ready)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    specs: Dict[str, DatasetSpec] = load_source_overrides(args.sources) if args.sources else dict(DATASETS)
    if args.list_sources:
        print(list_sources(specs))
        return 0
    if not args.root:
        print("error: give --root (or set $DATA)", file=sys.stderr)
        return 2
    if not args.names and not args.check:
        print("error: name the datasets to prepare (or 'all'), or pass --check", file=sys.stderr)
        return 2
    try:
        names = resolve_names(args.names or ["all"], specs)
    except KeyError as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 2
    args.root = os.path.abspath(os.path.expanduser(args.root))
    expected = load_expected_counts()
    if args.check:
        return _run_check(names, specs, args, expected)
    opts = Options(args.root, os.path.abspath(args.download_dir or os.path.join(args.root, DOWNLOADS_DIRNAME)),
                   args.force, args.keep_downloads, args.verify, args.check_files, not args.download_dir)
    results = []
    for name in names:
        ok, message = prepare_dataset(specs[name], opts, expected)
        print(f"[{name}] {'OK' if ok else 'FAILED'}: {message}", flush=True)
        results.append((name, ok))
    failed = [name for name, ok in results if not ok]
    print(f"\n{len(results) - len(failed)}/{len(results)} datasets ready"
          + (f"; not ready: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
