"""tools/make_tables.py: a synthetic output tree with known numbers -> the papers' tables, exactly.

The tree mixes results.json files (ours), logs in the Dassl format and the official MaPLe logs of the parity
fixtures, unfinished runs and absent ones.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tools.make_tables import Partial, collect, harmonic_mean, main, to_csv, to_markdown
from tools.result_tree import Cell

B2N = "base2new/{phase}/{dataset}/shots_16/MaPLe/vit_b16_c2_ep5_batch4_2ctx/seed{seed}"
XD_CFG = "MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets_16shots"
XD_TARGETS = ["caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft", "sun397",
              "dtd", "eurosat", "ucf101"]
COOP_FEW_SHOT = {1: "vit_b16_ep50", 2: "vit_b16_ep100", 4: "vit_b16_ep100", 8: "vit_b16", 16: "vit_b16"}


def _result(root: Path, rel: str, acc: float) -> None:
    run = root / rel
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({"accuracy": acc, "error_rate": 100 - acc, "split": "test"}))


def _eval_log(root: Path, rel: str, acc: float) -> None:
    """An evaluation-only log in the Dassl format (no results.json: the official scripts' runs)."""
    run = root / rel
    run.mkdir(parents=True)
    (run / "log.txt").write_text(f"Loading weights\nEvaluate on the *test* set\n=> result\n* accuracy: {acc:.2f}%\n"
                                 f"* error: {100 - acc:.2f}%\n")


def _make_tree(root: Path, fixtures_dir: Path) -> None:
    # caltech101: train_base 96/97/98 (results.json), reproduce.sh re-tested seed 1 at 99 (test_base wins);
    # novel 93/94/95 from evaluation-only logs.
    for seed, acc in zip((1, 2, 3), (96.0, 97.0, 98.0)):
        _result(root, B2N.format(phase="train_base", dataset="caltech101", seed=seed), acc)
        _eval_log(root, B2N.format(phase="test_new", dataset="caltech101", seed=seed), acc - 3)
    _result(root, B2N.format(phase="test_base", dataset="caltech101", seed=1), 99.0)
    # dtd: base seeds 1-2 only (seed 3 unfinished), novel 50/55/60.
    _result(root, B2N.format(phase="train_base", dataset="dtd", seed=1), 80.0)
    _result(root, B2N.format(phase="train_base", dataset="dtd", seed=2), 82.0)
    unfinished = root / B2N.format(phase="train_base", dataset="dtd", seed=3)
    unfinished.mkdir(parents=True)
    (unfinished / "log.txt").write_text("epoch [1/5] batch [20/40] loss 1.2\n")
    for seed, acc in zip((1, 2, 3), (50.0, 55.0, 60.0)):
        _result(root, B2N.format(phase="test_new", dataset="dtd", seed=seed), acc)
    # eurosat seed 1: the official MaPLe logs (base 21/36 correct, novel 6/30).
    src = fixtures_dir / "train_runs" / "caltech101" / "MaPLe"
    for phase, log in (("train_base", "log.txt"), ("test_new", "log_eval_new.txt")):
        run = root / B2N.format(phase=phase, dataset="eurosat", seed=1)
        run.mkdir(parents=True)
        shutil.copy(src / log, run / "log.txt")
    # Cross-dataset: source 70/71/72, target i at 40 + i + seed; DG: imagenetv2 and imagenet_sketch only.
    for seed in (1, 2, 3):
        _result(root, f"imagenet/{XD_CFG}/seed{seed}", 69.0 + seed)
        for i, target in enumerate(XD_TARGETS):
            _eval_log(root, f"evaluation/{XD_CFG}/{target}/seed{seed}", 40.0 + i + seed)
        _eval_log(root, f"evaluation/{XD_CFG}/imagenetv2/seed{seed}", 60.0 + seed)
        _eval_log(root, f"evaluation/{XD_CFG}/imagenet_sketch/seed{seed}", 45.0 + seed)
    # Few-shot CoOp on caltech101 (CoOp's per-shot configs): 80 + shots, seeds 1-3 (16 shots: seeds 1-2).
    for shots, cfg in COOP_FEW_SHOT.items():
        for seed in (1, 2, 3) if shots < 16 else (1, 2):
            _result(root, f"caltech101/CoOp/{cfg}_{shots}shots/seed{seed}", 80.0 + shots + seed)


@pytest.fixture()
def tree(tmp_path, fixtures_dir) -> Path:
    root = tmp_path / "output"
    _make_tree(root, fixtures_dir)
    return root


def _table(tables, name):
    (table,) = [t for t in tables if t.name == name]
    return table


def _row(table, label):
    (row,) = [r for r in table.rows if str(r[0]).startswith(label)]
    return row


def test_base2new_values_hm_and_average(tree):
    tables, _ = collect(tree, [1, 2, 3])
    table = _table(tables, "base2new_MaPLe_vit_b16_c2_ep5_batch4_2ctx_16shots")
    assert [r[0] for r in table.rows][:11] == ["ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "Flowers102",
                                               "Food101", "FGVCAircraft", "SUN397", "DTD", "EuroSAT", "UCF101"]
    _, base, new, hm = _row(table, "Caltech101")
    assert base.values == {1: 99.0, 2: 97.0, 3: 98.0} and new.values == {1: 93.0, 2: 94.0, 3: 95.0}
    assert (base.mean, new.mean) == (pytest.approx(98.0), pytest.approx(94.0))
    assert base.std == pytest.approx(np.std([99, 97, 98])) and hm == pytest.approx(2 * 98 * 94 / 192)
    _, base, new, hm = _row(table, "DTD")
    assert (base.n, base.mean, base.std) == (2, 81.0, 1.0) and new.mean == pytest.approx(55.0)
    assert hm == pytest.approx(2 * 81 * 55 / 136)
    _, base, new, hm = _row(table, "EuroSAT")
    assert base.mean == pytest.approx(100 * 21 / 36) and new.mean == pytest.approx(20.0) and base.n == 1
    assert _row(table, "ImageNet")[1:] == [None, None, None]
    label, b, n, hm = table.rows[-1]
    assert label == "Average (3 of 11 datasets)"
    assert b == pytest.approx((98 + 81 + 100 * 21 / 36) / 3) and n == pytest.approx((94 + 55 + 20) / 3)
    assert hm == pytest.approx(2 * b * n / (b + n))  # HM of the averages, not the average of the HMs
    assert hm != pytest.approx(np.mean([r[3] for r in table.rows[:-1] if r[3] is not None]))
    summary = _table(tables, "base2new_summary")
    assert summary.rows == [["MaPLe / vit_b16_c2_ep5_batch4_2ctx / 16 shots", "3 of 11", b, n, hm]]


def test_cross_dataset_and_domain_generalisation(tree):
    tables, missing = collect(tree, [1, 2, 3])
    (row,) = _table(tables, "cross_dataset").rows
    assert row[0] == XD_CFG and row[1].values == {1: 70.0, 2: 71.0, 3: 72.0}
    assert [c.mean for c in row[2:12]] == pytest.approx([42.0 + i for i in range(10)])
    assert row[12] == pytest.approx(np.mean([42.0 + i for i in range(10)]))  # the source is not averaged
    assert _table(tables, "cross_dataset").columns[:3] == ["Setting", "ImageNet (source)", "Caltech101"]
    dg = _table(tables, "domain_generalization")
    assert dg.columns == ["Setting", "ImageNet (source)", "ImageNet-V2", "ImageNet-S", "ImageNet-A", "ImageNet-R",
                          "Average"]
    (row,) = dg.rows
    assert [row[2].mean, row[3].mean, row[4], row[5]] == [62.0, 47.0, None, None]
    assert row[6] == Partial(54.5, 2, 4) and str(row[6]) == "54.50 (2 of 4)"
    assert f"domain_generalization {XD_CFG}: imagenet_a: seeds 1, 2, 3 missing" in missing
    assert not [m for m in missing if m.startswith("cross_dataset")]


def test_few_shot_curve_joins_coop_schedule_and_skips_xd_sources(tree):
    tables, missing = collect(tree, [1, 2, 3])
    few = [t for t in tables if t.name.startswith("few_shot")]
    # no MaPLe xd source; the summary lists every curve
    assert [t.name for t in few] == ["few_shot_CoOp_vit_b16+vit_b16_ep100+vit_b16_ep50", "few_shot_summary"]
    table = few[0]
    assert table.columns == ["Dataset", "1 shot", "2 shots", "4 shots", "8 shots", "16 shots"]
    row = _row(table, "Caltech101")
    assert [c.mean for c in row[1:]] == pytest.approx([83.0, 84.0, 86.0, 90.0, 97.5])
    assert [c.n for c in row[1:]] == [3, 3, 3, 3, 2]
    assert table.rows[-1][1] == Partial(83.0, 1, 11)
    setting = "CoOp / vit_b16+vit_b16_ep100+vit_b16_ep50"
    assert f"few_shot {setting}: caltech101 16 shots: seed 3 missing" in missing
    assert f"few_shot {setting}: dtd: no run" in missing


def test_few_shot_summary_puts_zero_shot_probe_adapters_and_prompts_side_by_side(tree):
    for shots in (1, 4):
        for seed in (1, 2):
            _result(tree, f"caltech101/LinearProbeCLIP/vit_b16_{shots}shots/seed{seed}", 50.0 + shots + seed)
            _result(tree, f"caltech101/TipAdapterF/vit_b16_{shots}shots/seed{seed}", 70.0 + shots)
    _result(tree, "ZeroshotCLIP/vit_b16/caltech101", 60.0)
    _result(tree, "ZeroshotCLIP/vit_b16/dtd", 40.0)
    tables, _ = collect(tree, [1, 2])
    summary = _table(tables, "few_shot_summary")
    assert summary.columns == ["Method", "0 shots", "1 shot", "2 shots", "4 shots", "8 shots", "16 shots"]
    assert [r[0] for r in summary.rows] == ["Zero-shot CLIP / vit_b16", "CoOp / vit_b16+vit_b16_ep100+vit_b16_ep50",
                                            "LinearProbeCLIP / vit_b16", "TipAdapterF / vit_b16"]
    assert summary.rows[0][1:] == [Partial(50.0, 2, 11), None, None, None, None, None]
    probe = _row(summary, "LinearProbeCLIP")
    assert probe[1] is None and probe[2] == Partial(52.5, 1, 11) and probe[4] == Partial(55.5, 1, 11)
    assert _row(summary, "TipAdapterF")[4] == Partial(74.0, 1, 11)
    assert "| Zero-shot CLIP / vit_b16 | 50.00 (2 of 11) |" in to_markdown(tables, [])


def test_missing_runs_are_listed_with_reasons(tree):
    _, missing = collect(tree, [1, 2, 3])
    setting = "base2new MaPLe / vit_b16_c2_ep5_batch4_2ctx / 16 shots"
    i = missing.index(f"{setting}: dtd base: seed 3 missing")
    assert "seed3" in missing[i + 1] and "no results.json" in missing[i + 1]
    assert f"{setting}: eurosat novel: seeds 2, 3 missing" in missing
    assert f"{setting}: imagenet base: seeds 1, 2, 3 missing" in missing
    assert not [m for m in missing if "caltech101 base" in m or "caltech101 novel" in m]
    _, fewer = collect(tree, [1])  # fewer expected seeds: fewer missing runs
    assert f"{setting}: eurosat novel: seeds 2, 3 missing" not in fewer


def test_markdown_and_csv_rendering(tree):
    tables, missing = collect(tree, [1, 2, 3])
    text = to_markdown(tables, missing)
    assert "## Base-to-novel generalisation: MaPLe / vit_b16_c2_ep5_batch4_2ctx / 16 shots" in text
    assert "| Caltech101 | 98.00 +- 0.82 (3) | 94.00 +- 0.82 (3) | 95.96 |" in text
    assert "| DTD | 81.00 +- 1.00 (2) | 55.00 +- 4.08 (3) | 65.51 |" in text
    assert "| ImageNet | - | - | - |" in text
    assert "## Missing runs" in text and "dtd base: seed 3 missing" in text
    table = _table(tables, "base2new_MaPLe_vit_b16_c2_ep5_batch4_2ctx_16shots")
    rows = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert list(rows[0]) == ["Dataset", "Base", "Base_std", "Base_n", "Novel", "Novel_std", "Novel_n", "HM"]
    dtd = next(r for r in rows if r["Dataset"] == "DTD")
    assert (dtd["Base"], dtd["Base_std"], dtd["Base_n"], dtd["HM"]) == ("81.0000", "1.0000", "2", "65.5147")
    assert next(r for r in rows if r["Dataset"] == "ImageNet")["Base_n"] == "0"


def test_cli_writes_markdown_csv_and_png(tree, tmp_path, capsys):
    assert main([str(tree)]) == 0
    assert "| Caltech101 | 98.00 +- 0.82 (3) |" in capsys.readouterr().out
    assert main([str(tree), "--format", "csv"]) == 0  # every file on stdout, each after its name
    text = capsys.readouterr().out
    assert "# base2new_summary.csv\nSetting,Datasets,Base,Novel,HM\n" in text
    assert "# missing_runs.txt\n" in text and "dtd base: seed 3 missing" in text
    out = tmp_path / "tables"
    assert main([str(tree), "--format", "csv", "--out", str(out), "--plot"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["base2new_MaPLe_vit_b16_c2_ep5_batch4_2ctx_16shots.csv",
                     "base2new_MaPLe_vit_b16_c2_ep5_batch4_2ctx_16shots.png", "base2new_summary.csv",
                     "cross_dataset.csv", "domain_generalization.csv",
                     "few_shot.png", "few_shot_CoOp_vit_b16+vit_b16_ep100+vit_b16_ep50.csv",
                     "few_shot_summary.csv", "missing_runs.txt"]
    for png in out.glob("*.png"):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert "dtd base: seed 3 missing" in (out / "missing_runs.txt").read_text()
    assert main([str(tree), "--out", str(out)]) == 0 and (out / "tables.md").read_text().startswith("## Base")


def test_empty_or_absent_tree_is_an_error(tmp_path, caplog):
    assert main([str(tmp_path / "nope")]) == 1
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 1
    assert "no run found under" in caplog.text


def test_helpers():
    assert harmonic_mean(80.0, 60.0) == pytest.approx(2 * 80 * 60 / 140)
    assert harmonic_mean(0.0, 0.0) == 0.0 and harmonic_mean(None, 50.0) is None
    cell = Cell({1: 50.0, 2: 70.0}, {3: "why"}).merged_over(Cell({2: 10.0, 3: 30.0}))
    assert cell.values == {1: 50.0, 2: 70.0, 3: 30.0} and cell.problems == {}
