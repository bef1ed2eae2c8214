"""tools/prepare_datasets.py end to end against a local HTTP server (127.0.0.1 only) and a toy Caltech101."""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import tarfile
import threading
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from fileio import TEMP_SUFFIX
from tools import dataset_fetch, prepare_datasets
from tools.dataset_fetch import Source
from tools.make_toy_dataset import make_toy_dataset
from tools.prepare_datasets import load_specs, resolve_names

REPO = Path(__file__).resolve().parents[2]
TOY_COUNTS = (6, 3, 3)  # 3 classes x 4 images: 2 train, 1 val, 1 test each (make_toy_dataset's split)
SPLIT_NAME = "split_zhou_Caltech101.json"
ARCHIVE = "101_ObjectCategories.tar.gz"


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; ``/truncated/<file>`` announces the full length but sends only half the bytes."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if not self.path.startswith("/truncated/"):
            return super().do_GET()
        data = (Path(self.directory) / self.path[len("/truncated/"):]).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.close_connection = True

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, folder served, md5 of the archive): a toy caltech-101 archive and its split file."""
    work = tmp_path_factory.mktemp("toy_src")
    make_toy_dataset(work, n_classes=3, per_class=4, size=8, seed=0)
    serve = tmp_path_factory.mktemp("served")
    with tarfile.open(serve / ARCHIVE, "w:gz") as tf:
        tf.add(work / "caltech-101" / "101_ObjectCategories", arcname="101_ObjectCategories")
    shutil.copy(work / "caltech-101" / SPLIT_NAME, serve / SPLIT_NAME)
    (serve / "classnames.txt").write_text("n01440764 tench\nn01443537 goldfish\n")
    (serve / "page.html").write_text("<!DOCTYPE html><html><body>moved</body></html>")
    md5 = hashlib.md5((serve / ARCHIVE).read_bytes()).hexdigest()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(serve)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", serve, md5
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def toy_counts(monkeypatch):
    """The official counts are for the real data: compare the toy trees against their own sizes."""
    monkeypatch.setattr(prepare_datasets, "EXPECTED_COUNTS", {"Caltech101": TOY_COUNTS, "ImageNet": (3, None, 2)})


@pytest.fixture(autouse=True)
def local_network_only(monkeypatch):
    """Tests may only talk to the local server: any other host or Google Drive fails the test."""
    real = dataset_fetch.http_download

    def guarded(url: str, out_path: str) -> None:
        assert urlparse(url).hostname == "127.0.0.1", f"test tried to contact {url}"
        real(url, out_path)

    monkeypatch.setattr(dataset_fetch, "http_download", guarded)
    monkeypatch.setattr(dataset_fetch, "gdrive_download", lambda *a: pytest.fail(f"Google Drive contacted: {a}"))


def _sources_file(tmp_path: Path, base: str, archive_urls, md5=None, split_url=None) -> str:
    """A --sources JSON for caltech101: the archive from ``archive_urls``, the split from ``base`` (or split_url)."""
    entry = {"filename": ARCHIVE, "urls": list(archive_urls), "extract": [["101_ObjectCategories"] * 2]}
    if md5:
        entry["md5"] = md5
    split = {"filename": SPLIT_NAME, "urls": [split_url or f"{base}/{SPLIT_NAME}"]}
    path = tmp_path / "sources.json"
    path.write_text(json.dumps({"caltech101": [entry, split]}))
    return str(path)


def _leftovers(root: Path):
    """Anything a failed prepare must not leave: temp files of downloads, scratch folders, a dataset folder."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.endswith(TEMP_SUFFIX) or p.name.startswith(".prepare-") or p.name == "caltech-101")


def test_prepare_downloads_extracts_and_check_passes(served, tmp_path, capsys):
    url, _, md5 = served
    root = tmp_path / "data"
    sources = _sources_file(tmp_path, url, [f"{url}/{ARCHIVE}"], md5=md5)
    assert prepare_datasets.main(["--root", str(root), "--sources", sources, "caltech101"]) == 0
    dataset = root / "caltech-101"
    assert (dataset / SPLIT_NAME).is_file()
    assert len(list((dataset / "101_ObjectCategories").glob("*/*.jpg"))) == 12
    assert sorted(p.name for p in root.iterdir()) == ["caltech-101"]  # no scratch, no downloads left
    capsys.readouterr()
    assert prepare_datasets.main(["--root", str(root), "--check", "Caltech101"]) == 0
    out = capsys.readouterr().out
    assert "1/1 datasets OK" in out and "6/3/3" in out
    # A second prepare finds it ready and downloads nothing.
    assert prepare_datasets.main(["--root", str(root), "--sources", sources, "caltech101"]) == 0
    assert "already prepared" in capsys.readouterr().out


def test_truncated_download_is_reported_and_leaves_nothing(served, tmp_path, capsys):
    url, _, _ = served
    root = tmp_path / "data"
    sources = _sources_file(tmp_path, url, [f"{url}/truncated/{ARCHIVE}"], split_url=f"{url}/{SPLIT_NAME}")
    assert prepare_datasets.main(["--root", str(root), "--sources", sources, "caltech101"]) == 1
    out = capsys.readouterr().out
    assert "truncated download" in out and "FAILED" in out
    assert _leftovers(root) == []
    assert not (root / prepare_datasets.DOWNLOADS_DIRNAME / ARCHIVE).exists()


def test_wrong_checksum_is_reported_and_leaves_nothing(served, tmp_path, capsys):
    url, _, md5 = served
    root = tmp_path / "data"
    sources = _sources_file(tmp_path, url, [f"{url}/{ARCHIVE}"], md5="0" * 32)
    assert prepare_datasets.main(["--root", str(root), "--sources", sources, "caltech101"]) == 1
    out = capsys.readouterr().out
    assert f"md5 mismatch for {ARCHIVE}: expected {'0' * 32}, got {md5}" in out
    assert _leftovers(root) == []
    assert not (root / prepare_datasets.DOWNLOADS_DIRNAME).exists()


def test_dead_link_html_page_falls_back_to_next_url(served, tmp_path, capsys):
    url, _, md5 = served
    root = tmp_path / "data"
    sources = _sources_file(tmp_path, url, [f"{url}/page.html", f"{url}/missing.tar.gz", f"{url}/{ARCHIVE}"])
    assert prepare_datasets.main(["--root", str(root), "--sources", sources, "caltech101"]) == 0
    assert (root / "caltech-101" / "101_ObjectCategories").is_dir()


def test_failure_after_a_good_download_keeps_only_the_verified_archive(served, tmp_path, capsys):
    url, _, md5 = served
    root = tmp_path / "data"
    sources = _sources_file(tmp_path, url, [f"{url}/{ARCHIVE}"], md5=md5, split_url=f"{url}/page.html")
    assert prepare_datasets.main(["--root", str(root), "--sources", sources, "caltech101"]) == 1
    out = capsys.readouterr().out
    assert "HTML page instead of the file" in out and "kept for a rerun" in out
    assert _leftovers(root) == []
    kept = root / prepare_datasets.DOWNLOADS_DIRNAME / ARCHIVE
    assert hashlib.md5(kept.read_bytes()).hexdigest() == md5  # reused (and re-checked) by the next run


def test_check_reports_missing_image_with_exact_path(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(prepare_datasets, "EXPECTED_COUNTS", {"Caltech101": (24, 12, 12)})
    root = tmp_path / "data"
    make_toy_dataset(root, n_classes=3, per_class=16, size=8, seed=0)
    # The last test image (beyond the first items readers spot-check): the check must find any one.
    last_test = json.loads((root / "caltech-101" / SPLIT_NAME).read_text())["test"][-1][0]
    victim = root / "caltech-101" / "101_ObjectCategories" / last_test
    assert prepare_datasets.main(["--root", str(root), "--check", "caltech101"]) == 0
    victim.unlink()
    capsys.readouterr()
    assert prepare_datasets.main(["--root", str(root), "--check", "caltech101"]) == 1
    out = capsys.readouterr().out
    assert f"missing: {victim}" in out and "FILES" in out
    # --no-files only compares the counts, which are still right.
    assert prepare_datasets.main(["--root", str(root), "--check", "--no-files", "caltech101"]) == 0


def test_check_reports_missing_dataset_split_file_and_wrong_counts(tmp_path, capsys, monkeypatch):
    root = tmp_path / "data"
    assert prepare_datasets.main(["--root", str(root), "--check", "caltech101"]) == 1
    assert "MISSING" in capsys.readouterr().out
    make_toy_dataset(root, n_classes=3, per_class=4, size=8, seed=0)
    monkeypatch.setattr(prepare_datasets, "EXPECTED_COUNTS", {"Caltech101": (4128, 1649, 2465)})
    assert prepare_datasets.main(["--root", str(root), "--check", "caltech101"]) == 1
    assert "train 6 (expected 4128)" in capsys.readouterr().out
    (root / "caltech-101" / SPLIT_NAME).unlink()
    assert prepare_datasets.main(["--root", str(root), "--check", "caltech101"]) == 1
    assert f"missing {root / 'caltech-101' / SPLIT_NAME}" in capsys.readouterr().out
    assert not (root / "caltech-101" / SPLIT_NAME).exists()  # the check never re-creates a split


def test_existing_broken_folder_needs_force(served, tmp_path, capsys):
    url, _, md5 = served
    root = tmp_path / "data"
    (root / "caltech-101").mkdir(parents=True)
    sources = _sources_file(tmp_path, url, [f"{url}/{ARCHIVE}"], md5=md5)
    assert prepare_datasets.main(["--root", str(root), "--sources", sources, "caltech101"]) == 1
    assert "--force" in capsys.readouterr().out
    assert prepare_datasets.main(["--root", str(root), "--sources", sources, "--force", "caltech101"]) == 0
    assert (root / "caltech-101" / SPLIT_NAME).is_file()


def test_manual_file_is_taken_from_the_download_dir_and_kept(served, tmp_path, capsys):
    url, serve, md5 = served
    root, downloads = tmp_path / "data", tmp_path / "my_downloads"
    sources = tmp_path / "sources.json"
    sources.write_text(json.dumps({"caltech101": [
        {"filename": ARCHIVE, "extract": [["101_ObjectCategories"] * 2], "md5": md5},  # no URL: manual
        {"filename": SPLIT_NAME, "urls": [f"{url}/{SPLIT_NAME}"]}]}))
    args = ["--root", str(root), "--sources", str(sources), "--download-dir", str(downloads), "caltech101"]
    assert prepare_datasets.main(args) == 1
    assert str(downloads / ARCHIVE) in capsys.readouterr().out
    downloads.mkdir()
    shutil.copy(serve / ARCHIVE, downloads / ARCHIVE)
    assert prepare_datasets.main(args) == 0
    assert (root / "caltech-101" / "101_ObjectCategories").is_dir()
    assert sorted(p.name for p in downloads.iterdir()) == [ARCHIVE]  # the user's file stays, ours is gone


def test_manual_step_datasets_print_exact_paths(tmp_path, capsys):
    root = tmp_path / "data"
    assert prepare_datasets.main(["--root", str(root), "stanford_cars", "imagenet"]) == 1
    out = capsys.readouterr().out
    downloads = root / prepare_datasets.DOWNLOADS_DIRNAME
    for name in ("cars_train.tgz", "cars_test.tgz", "car_devkit.tgz", "cars_test_annos_withlabels.mat"):
        assert str(downloads / name) in out
    assert str(root / "imagenet" / "images" / "train") in out and str(root / "imagenet" / "images" / "val") in out
    assert "0/2 datasets ready" in out
    assert not root.exists() or not any(root.iterdir())


def test_imagenet_laid_out_by_hand_gets_its_classnames_downloaded(served, tmp_path, capsys):
    url, _, _ = served
    root = tmp_path / "data"
    images = root / "imagenet" / "images"
    for split, per_class in (("train", (2, 1)), ("val", (1, 1))):
        for wnid, count in zip(("n01440764", "n01443537"), per_class):
            (images / split / wnid).mkdir(parents=True)
            for i in range(count):
                (images / split / wnid / f"{wnid}_{i}.JPEG").write_bytes(b"not decoded by the check")
    sources = tmp_path / "imagenet_sources.json"
    sources.write_text(json.dumps({"imagenet": [{"filename": "classnames.txt", "urls": [f"{url}/classnames.txt"]}]}))
    assert prepare_datasets.main(["--root", str(root), "--sources", str(sources), "imagenet"]) == 0
    assert (root / "imagenet" / "classnames.txt").read_text().startswith("n01440764 tench")
    assert not (root / prepare_datasets.DOWNLOADS_DIRNAME).exists()
    capsys.readouterr()
    assert prepare_datasets.main(["--root", str(root), "--check", "imagenet"]) == 0
    assert "3/-/2" in capsys.readouterr().out


def test_unsafe_zip_member_is_refused(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../escaped.txt", "x")
    with pytest.raises(dataset_fetch.PrepareError, match="outside"):
        dataset_fetch.extract_archive(str(bad), str(tmp_path / "out"))
    assert not (tmp_path / "escaped.txt").exists()


def test_a_download_takes_its_final_name_only_once_verified(served, tmp_path, monkeypatch):
    url, _, md5 = served
    downloads, final, checked = tmp_path / "dl", tmp_path / "dl" / ARCHIVE, []
    real_check = dataset_fetch.check_file

    def spy(path, src):  # what exists while the checks run
        checked.append((Path(path).name, final.exists()))
        real_check(path, src)

    monkeypatch.setattr(dataset_fetch, "check_file", spy)
    with pytest.raises(dataset_fetch.PrepareError, match="md5 mismatch"):
        dataset_fetch.obtain(Source(ARCHIVE, (f"{url}/{ARCHIVE}",), md5="0" * 32), str(downloads), str(tmp_path))
    assert list(downloads.iterdir()) == []  # the rejected download left nothing, not even its temp file
    path = dataset_fetch.obtain(Source(ARCHIVE, (f"{url}/{ARCHIVE}",), md5=md5), str(downloads), str(tmp_path))
    assert path == str(final) and [p.name for p in downloads.iterdir()] == [ARCHIVE]
    assert len(checked) == 2 and all(name.startswith(f".{ARCHIVE}.") and name.endswith(TEMP_SUFFIX) and not exists
                                     for name, exists in checked)


def test_root_scheme_copies_a_file_of_another_dataset(tmp_path):
    (tmp_path / "imagenet").mkdir()
    (tmp_path / "imagenet" / "classnames.txt").write_text("n01440764 tench\n")
    src = Source("classnames.txt", ("root:imagenet/classnames.txt",))
    path = dataset_fetch.obtain(src, str(tmp_path / "dl"), str(tmp_path))
    assert Path(path).read_text() == "n01440764 tench\n"


def test_source_table_matches_readers_configs_and_counts():
    import importlib

    from datasets.counts import EXPECTED_COUNTS
    from engine.registry import DATASET_REGISTRY

    specs = load_specs()
    assert len(specs) == 15
    for name, spec in specs.items():
        config = yaml.safe_load((REPO / "configs" / "datasets" / f"{name}.yaml").read_text())
        assert config["DATASET"]["NAME"] == spec.reader, name
        importlib.import_module(f"datasets.{name}")  # the reader's module is the config name
        assert DATASET_REGISTRY.get(spec.reader).folder == spec.folder, name
        assert spec.reader in EXPECTED_COUNTS, name
        assert all(src.urls or spec.manual for src in spec.sources), f"{name}: manual source without instructions"
        assert all(src.md5 is None or src.checksum_origin for src in spec.sources), name
    assert resolve_names(["Caltech101", "caltech101", "all"], specs)[:2] == ["caltech101", "imagenet"]
    with pytest.raises(ValueError, match="choose from"):
        resolve_names(["cifar10"], specs)


def test_bad_sources_file_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "sources.json"
    bad.write_text(json.dumps({"caltech101": [{"filename": "a.zip", "sha1": "x"}]}))
    assert prepare_datasets.main(["--root", str(tmp_path), "--sources", str(bad), "caltech101"]) == 2
    assert "unknown source key(s) ['sha1']" in capsys.readouterr().err
    bad.write_text(json.dumps({"cifar10": []}))
    assert prepare_datasets.main(["--root", str(tmp_path), "--sources", str(bad), "caltech101"]) == 2
    assert "unknown dataset(s) ['cifar10']" in capsys.readouterr().err
