"""scripts/<method>/*.sh: every wrapper of every method prints the official command line and output folder.

The expected values are written out by hand (trainer, config and last epoch per method and protocol, as the
official MaPLe / CoCoOp scripts have them), so a change in tools/protocols.py cannot silently move a tree.
"""
from __future__ import annotations

import pytest

from tests.scripts.helpers import REPO, commands, run, stub_python

# method folder -> (trainer, base2new config, its MAX_EPOCH, cross-dataset config, its MAX_EPOCH, few-shot config)
METHODS = {
    "coop": ("CoOp", "vit_b16_ctxv1", "200", "vit_b16_ep50_ctxv1", "50", None),
    "cocoop": ("CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1", "10", "vit_b16_c4_ep10_batch1_ctxv1", "10",
               "vit_b16_c4_ep10_batch1_ctxv1"),
    "maple": ("MaPLe", "vit_b16_c2_ep5_batch4_2ctx", "5", "vit_b16_c2_ep5_batch4_2ctx_cross_datasets", "2",
              "vit_b16_c2_ep50_batch4_2ctx_few_shot"),
    "vpt": ("VPT", "vit_b16_c2_ep5_batch4_4", "5", "vit_b16_c2_ep5_batch4_4", "5", "vit_b16_c2_ep5_batch4_4_few_shot"),
    "ivlp": ("IVLP", "vit_b16_c2_ep5_batch4_2+2ctx", "5", "vit_b16_c2_ep5_batch4_2+2ctx", "5",
             "vit_b16_c2_ep5_batch4_2+2ctx_few_shot"),
    "language": ("IVLP", "vit_b16_c2_ep5_batch4_4ctx_language_only", "5",
                 "vit_b16_c2_ep5_batch4_4ctx_language_only", "5", "vit_b16_c2_ep5_batch4_4ctx_language_only_few_shot"),
    "mudpt": ("MuDPT", "vit_b16_bz4_ep10_nctx4_depth9", "10", "vit_b16_bz4_ep5_nctx2_depth9", "5",
              "vit_b16_bz4_ep10_nctx4_depth9"),
    "promptsrc": ("PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx", "20", "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets",
                  "20", "vit_b16_c2_ep50_batch4_4+4ctx_few_shot"),
    "kgcoop": ("KgCoOp", "vit_b16_ep100_ctxv1", "100", "vit_b16_ep100_ctxv1", "100", "vit_b16_ep100_ctxv1"),
    "prograd": ("ProGrad", "rn50_ep100", "100", "rn50_ep100", "100", "rn50_ep100"),
    "tcp": ("TCP", "vit_b16_ep100_ctxv1", "50", "vit_b16_ep100_ctxv1", "50", "vit_b16_ep100_ctxv1"),
    # DePT over MaPLe (its default variant); no few-shot script (its head trains on base classes or ImageNet only)
    "dept": ("ExtrasLinearProbeMaPLe", "vit_b16_c2_ep10_batch4_2ctx", "10", "vit_b16_c2_ep10_batch4_2ctx", "10", None),
}
# what a method's official scripts add after the protocol's options (KgCoOp: the weight its scripts pass)
OPTS = {"kgcoop": ["TRAINER.COOP.W", "8.0"], "prograd": ["LOSS.LAMBDA", "1.0"],
        "tcp": ["TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.W", "1.0"]}
PROTOCOLS = ["base2new_train", "base2new_test", "xd_train", "xd_test", "reproduce", "reproduce_xd", "few_shot"]
# the feature-based baselines: few-shot only, ViT-B/16 configs
FEATURE_METHODS = {"linear_probe": "LinearProbeCLIP", "clip_adapter": "CLIP_Adapter", "tip_adapter": "TipAdapter",
                   "tip_adapter_f": "TipAdapterF"}


def _head(trainer: str, dataset: str, seed: str, cfg: str) -> list[str]:
    return ["python", "train.py", "--root", "/datasets", "--seed", seed, "--trainer", trainer,
            "--dataset-config-file", f"configs/datasets/{dataset}.yaml",
            "--config-file", f"configs/trainers/{trainer}/{cfg}.yaml"]


def test_every_script_is_a_link_to_the_one_runner_and_configs_exist():
    scripts = REPO / "scripts"
    links = {str(p.relative_to(scripts)) for p in scripts.rglob("*.sh") if p.is_symlink()}
    assert links == {f"{m}/{p}.sh" for m in [*METHODS, "mmrl"] for p in PROTOCOLS} - {"dept/few_shot.sh"} | {
        "coop/main.sh", "coop/eval.sh", "zsclip/zeroshot.sh", "run_all.sh"} | {
        f"{m}/few_shot.sh" for m in FEATURE_METHODS} | {
        "actionclip/train.sh", "actionclip/test.sh", "actionclip/zero_shot.sh"}
    assert {(scripts / link).resolve() for link in links} == {scripts / "run.sh"}
    assert sorted(p.name for p in scripts.rglob("*") if p.is_file() and not p.is_symlink()) == [
        "quickstart.sh", "run.sh"]
    for method, (trainer, b2n, _, xd, _, few) in METHODS.items():
        for cfg in {b2n, xd} | ({few} if few else set()):  # CoOp's few-shot files: test_coop_few_shot_...
            assert (REPO / "configs" / "trainers" / trainer / f"{cfg}.yaml").is_file(), (trainer, cfg)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_base2new_train_and_test(tmp_path, method):
    trainer, cfg, epoch, *_ = METHODS[method]
    tail = f"caltech101/shots_16/{trainer}/{cfg}/seed2"
    train = commands(run(f"{method}/base2new_train.sh", "caltech101", "2", out_root=tmp_path))
    assert train == [_head(trainer, "caltech101", "2", cfg) + [
        "--output-dir", f"{tmp_path}/base2new/train_base/{tail}",
        "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base", *OPTS.get(method, [])]]
    test = commands(run(f"{method}/base2new_test.sh", "caltech101", "2", out_root=tmp_path))
    assert test == [_head(trainer, "caltech101", "2", cfg) + [
        "--model-dir", f"{tmp_path}/base2new/train_base/{tail}", "--load-epoch", epoch, "--eval-only",
        "--output-dir", f"{tmp_path}/base2new/test_new/{tail}",
        "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "new", *OPTS.get(method, [])]]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_xd_train_and_test(tmp_path, method):
    trainer, _, _, cfg, epoch, _ = METHODS[method]
    model_dir = f"{tmp_path}/imagenet/{trainer}/{cfg}_16shots/seed3"
    train = commands(run(f"{method}/xd_train.sh", "imagenet", "3", out_root=tmp_path))
    assert train == [_head(trainer, "imagenet", "3", cfg) + [
        "--output-dir", model_dir, "DATASET.NUM_SHOTS", "16", *OPTS.get(method, [])]]
    # CoCoOp's official xd_train.sh takes the seed alone (DATASET=imagenet): the same command.
    assert commands(run(f"{method}/xd_train.sh", "3", out_root=tmp_path)) == train
    for target in ("oxford_pets", "imagenet_sketch"):  # cross-dataset and domain generalisation alike
        test = commands(run(f"{method}/xd_test.sh", target, "3", out_root=tmp_path))
        assert test == [_head(trainer, target, "3", cfg) + [
            "--model-dir", model_dir, "--load-epoch", epoch, "--eval-only",
            "--output-dir", f"{tmp_path}/evaluation/{trainer}/{cfg}_16shots/{target}/seed3",
            *OPTS.get(method, [])]]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_reproduce_released_weights(tmp_path, method):
    trainer, cfg, epoch, xd_cfg, xd_epoch, _ = METHODS[method]
    cmds = commands(run(f"{method}/reproduce.sh", "dtd", "1", "/weights/dtd/", out_root=tmp_path))
    assert cmds == [_head(trainer, "dtd", "1", cfg) + [
        "--model-dir", "/weights/dtd/base/seed1", "--load-epoch", epoch, "--eval-only",
        "--output-dir", f"{tmp_path}/base2new/test_{sub}/dtd/shots_16/{trainer}/{cfg}/seed1",
        "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", sub, *OPTS.get(method, [])] for sub in ("base", "new")]
    cmds = commands(run(f"{method}/reproduce_xd.sh", "food101", "2", "/weights/imagenet", out_root=tmp_path))
    assert cmds == [_head(trainer, "food101", "2", xd_cfg) + [
        "--model-dir", "/weights/imagenet/seed2", "--load-epoch", xd_epoch, "--eval-only",
        "--output-dir", f"{tmp_path}/evaluation/{trainer}/{xd_cfg}_16shots/food101/seed2", *OPTS.get(method, [])]]


@pytest.mark.parametrize("method", sorted(m for m, entry in METHODS.items() if entry[-1]))  # not coop's, dept's
def test_few_shot(tmp_path, method):
    trainer, *_, cfg = METHODS[method]
    cmds = commands(run(f"{method}/few_shot.sh", "eurosat", "1", out_root=tmp_path))
    assert cmds == [_head(trainer, "eurosat", "1", cfg) + [
        "--output-dir", f"{tmp_path}/eurosat/{trainer}/{cfg}_{k}shots/seed1", "DATASET.NUM_SHOTS", str(k),
        *OPTS.get(method, [])]
        for k in (1, 2, 4, 8, 16)]
    (cmd,) = commands(run(f"{method}/few_shot.sh", "eurosat", "1", "4", out_root=tmp_path))
    assert cmd == cmds[2]


def test_coop_few_shot_follows_the_coop_schedule(tmp_path):
    cmds = commands(run("coop/few_shot.sh", "dtd", "1", out_root=tmp_path))
    cfgs = [c[c.index("--config-file") + 1].split("/")[-1] for c in cmds]
    assert cfgs == ["vit_b16_ep50.yaml", "vit_b16_ep100.yaml", "vit_b16_ep100.yaml", "vit_b16.yaml", "vit_b16.yaml"]
    assert cmds[0][cmds[0].index("--output-dir") + 1] == f"{tmp_path}/dtd/CoOp/vit_b16_ep50_1shots/seed1"
    imagenet = commands(run("coop/few_shot.sh", "imagenet", "1", "2", "16", out_root=tmp_path))
    assert [c[c.index("--output-dir") + 1] for c in imagenet] == [
        f"{tmp_path}/imagenet/CoOp/vit_b16_ep50_{k}shots/seed1" for k in (2, 16)]
    (cmd,) = commands(run("coop/few_shot.sh", "dtd", "1", "8", out_root=tmp_path, env={"CFG": "rn50"}))
    assert cmd[cmd.index("--output-dir") + 1] == f"{tmp_path}/dtd/CoOp/rn50_8shots/seed1"


def test_overrides_cfg_shots_loadep_and_src(tmp_path):
    env = {"CFG": "vit_b16_c2_ep5_batch4_2ctx", "SHOTS": "4", "LOADEP": "3", "SRC_DATASET": "caltech101"}
    (cmd,) = commands(run("maple/xd_test.sh", "dtd", "1", out_root=tmp_path, env=env))
    assert cmd[cmd.index("--model-dir") + 1] == f"{tmp_path}/caltech101/MaPLe/vit_b16_c2_ep5_batch4_2ctx_4shots/seed1"
    assert cmd[cmd.index("--load-epoch") + 1] == "3"
    (cmd,) = commands(run("maple/base2new_test.sh", "dtd", "1", out_root=tmp_path,
                          env={"EXTRA_OPTS": "OPTIM.MAX_EPOCH 1", "SUB": "base"}))
    assert cmd[cmd.index("--load-epoch") + 1] == "1"
    assert "/base2new/test_base/dtd/" in cmd[cmd.index("--output-dir") + 1]


@pytest.mark.parametrize("script,args,message", [
    ("maple/base2new_train.sh", ["dtd"], "usage: "),
    ("maple/reproduce.sh", ["dtd", "1"], "DATASET SEED WEIGHTSPATH"),
    ("vpt/few_shot.sh", ["dtd", "1", "four"], "SHOTS must be positive integers"),
    ("cocoop/xd_test.sh", ["imagenet_b", "1"], "configs/datasets/imagenet_b.yaml"),
    ("maple/base2new_test.sh", ["dtd", "1", "2"], "/maple/base2new_test.sh DATASET SEED\n"),
    ("mudpt/xd_test.sh", ["dtd", "1", "XMuDPT"], "DATASET SEED [MuDPT|UMuDPT|UUMuDPT]"),
    ("run_all.sh", ["zsclip", "base2new"],
     "/run_all.sh: unknown method 'zsclip' (choices: coop cocoop maple vpt ivlp language mudpt mmrl promptsrc "
     "kgcoop prograd tcp dept linear_probe clip_adapter tip_adapter tip_adapter_f)\n"),
    ("dept/xd_test.sh", ["dtd", "1", "XMaPLe"], "DATASET SEED [MaPLe|CoOp|CoCoOp|KgCoOp]"),
    ("run.sh", ["dept", "few_shot", "dtd", "1"], "unknown protocol 'few_shot' for method 'dept' (choices: "
     "base2new_train base2new_test xd_train xd_test reproduce reproduce_xd)"),
    ("run_all.sh", ["dept", "few_shot"], "unknown protocol 'few_shot' for method 'dept' (choices: base2new xd dg)"),
    ("run_all.sh", ["maple", "cross"], "unknown protocol 'cross' (choices: base2new xd dg few_shot)"),
    ("run_all.sh", ["maple"], "/run_all.sh METHOD PROTOCOL\n"),
    ("run.sh", ["zsclip", "base2new_train", "dtd", "1"],
     "unknown protocol 'base2new_train' for method 'zsclip' (choices: zeroshot)"),
    ("run.sh", ["clip", "zeroshot", "dtd", "vit_b16"], "unknown method 'clip' (choices: coop cocoop"),
])
def test_bad_arguments(tmp_path, script, args, message):
    proc = run(script, *args, out_root=tmp_path)
    assert proc.returncode != 0 and message in proc.stderr and proc.stdout == ""


def test_run_sh_names_method_and_protocol_in_its_arguments(tmp_path):
    link = commands(run("mudpt/few_shot.sh", "dtd", "1", "4", "UMuDPT", out_root=tmp_path))
    assert commands(run("run.sh", "mudpt", "few_shot", "dtd", "1", "4", "UMuDPT", out_root=tmp_path)) == link
    assert len(link) == 1 and "UMuDPT" in link[0]


def test_jobs_are_data_and_evaluations_name_the_model_they_need(tmp_path):
    from tools.protocols import Job, plan

    grid = {"SEEDS": "1 2", "DATASETS": "dtd eurosat"}
    jobs = plan("scripts/run_all.sh", ["maple", "base2new"], {**grid, "DATA": "/d", "OUTPUT_ROOT": str(tmp_path)})
    assert [type(j) for j in jobs] == [Job] * 8
    for train, test in zip(jobs[::2], jobs[1::2]):
        assert not train.needs and test.needs == train.out and "/test_new/" in test.out
        assert train.argv[train.argv.index("--output-dir") + 1] == train.out
    dry = commands(run("run_all.sh", "maple", "base2new", data="/d", out_root=tmp_path, env=grid))
    assert dry == [["python", "train.py", *j.argv] for j in jobs]


def test_cfg_override_must_exist(tmp_path):
    proc = run("ivlp/base2new_test.sh", "dtd", "1", out_root=tmp_path, env={"CFG": "nope"})
    assert proc.returncode != 0
    assert "configs/trainers/IVLP/nope.yaml" in proc.stderr and "vit_b16_c2_ep5_batch4_2+2ctx" in proc.stderr


def test_reproduce_needs_the_weights_and_skips_finished_phases(tmp_path):
    proc = run("maple/reproduce.sh", "dtd", "1", str(tmp_path / "none"), dry=False, out_root=tmp_path,
               env={"PYTHON": "/bin/false"})
    assert proc.returncode != 0 and "model directory not found" in proc.stderr
    weights = tmp_path / "w"
    (weights / "base" / "seed1").mkdir(parents=True)
    calls = tmp_path / "calls.txt"
    env = {"PYTHON": str(stub_python(tmp_path)), "CALLS": str(calls)}
    first = run("maple/reproduce.sh", "dtd", "1", str(weights), dry=False, out_root=tmp_path / "out", env=env)
    assert first.returncode == 0, first.stderr
    assert len(calls.read_text().splitlines()) == 2
    again = run("maple/reproduce.sh", "dtd", "1", str(weights), dry=False, out_root=tmp_path / "out", env=env)
    assert again.returncode == 0 and again.stderr.count("skip this job") == 2
    assert len(calls.read_text().splitlines()) == 2


@pytest.mark.parametrize("protocol,count,first,last", [
    ("base2new", 2 * 11, "base2new/train_base/imagenet/", "base2new/test_new/ucf101/"),
    ("xd", 1 + 10, "imagenet/MaPLe/", "evaluation/MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets_16shots/ucf101/"),
    ("dg", 1 + 4, "imagenet/MaPLe/", "evaluation/MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets_16shots/imagenet_r/"),
    ("few_shot", 5 * 11, "imagenet/MaPLe/vit_b16_c2_ep50_batch4_2ctx_few_shot_1shots/", "ucf101/MaPLe/"),
])
def test_run_all(tmp_path, protocol, count, first, last):
    cmds = commands(run("run_all.sh", "maple", protocol, out_root=tmp_path, env={"SEEDS": "1 2"}))
    assert len(cmds) == 2 * count
    outs = [c[c.index("--output-dir") + 1] for c in cmds]
    assert outs[0].startswith(f"{tmp_path}/{first}") and outs[count - 1].startswith(f"{tmp_path}/{last}")
    assert outs[0].endswith("seed1") and outs[-1].endswith("seed2")
    picked = commands(run("run_all.sh", "maple", protocol, out_root=tmp_path, env={"SEEDS": "3", "DATASETS": "dtd"}))
    assert all("configs/datasets/dtd.yaml" in c or "configs/datasets/imagenet.yaml" in c for c in picked)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_data_unset_is_an_error(tmp_path, protocol):
    args = ["dtd", "1", "/weights"] if protocol.startswith("reproduce") else ["dtd", "1"]
    proc = run(f"language/{protocol}.sh", *args, data=None, out_root=tmp_path)
    assert proc.returncode != 0 and "DATA=/path/to/datasets" in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("folder,variant,trainer,cfg,epoch", [
    ("mudpt", "UMuDPT", "UMuDPT", "vit_b16_bz4_ep5_nctx2_depth9", "5"),
    ("mudpt", "UUMuDPT", "UUMuDPT", "vit_b16_bz4_ep10_nctx4_depth9", "10"),
    # DePT: the variant names the method its head extends (its configs.py's config of each)
    ("dept", "CoOp", "ExtrasLinearProbeCoOp", "vit_b16_ep10_bs4_lr35", "10"),
    ("dept", "CoCoOp", "ExtrasLinearProbeCoCoOp", "vit_b16_c4_ep10_batch1_ctxv1", "10"),
    ("dept", "KgCoOp", "ExtrasLinearProbeKgCoOp", "vit_b16_ep10_ctxv1_bs4_lr35", "10"),
])
def test_variant_as_trailing_argument_or_environment(tmp_path, folder, variant, trainer, cfg, epoch):
    tail = f"caltech101/shots_16/{trainer}/{cfg}/seed1"
    expected = [_head(trainer, "caltech101", "1", cfg) + [
        "--model-dir", f"{tmp_path}/base2new/train_base/{tail}", "--load-epoch", epoch, "--eval-only",
        "--output-dir", f"{tmp_path}/base2new/test_new/{tail}",
        "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "new"]]
    assert commands(run(f"{folder}/base2new_test.sh", "caltech101", "1", variant, out_root=tmp_path)) == expected
    assert commands(run(f"{folder}/base2new_test.sh", "caltech101", "1", out_root=tmp_path,
                        env={"VARIANT": variant})) == expected
    (xd,) = commands(run(f"{folder}/xd_train.sh", "1", variant, out_root=tmp_path))
    assert xd[xd.index("--trainer") + 1] == trainer
    bad = run(f"{folder}/base2new_test.sh", "caltech101", "1", out_root=tmp_path, env={"VARIANT": "X" + variant})
    label = {"mudpt": "MuDPT", "dept": "DePT"}[folder]
    assert bad.returncode != 0 and f"unknown {label} variant 'X{variant}'" in bad.stderr


def test_mmrl_scripts_add_the_official_task_and_imagenet_configs(tmp_path):
    # The official MMRL scripts: TASK B2N / CD / FS picks the test head; cross-dataset runs set REG_WEIGHT 0.2 (and
    # REP_DIM 512 at test, so EuroSAT's own 2048 cannot break the ImageNet model); ImageNet has its own configs.
    def cmd(script, *args):
        return commands(run(f"mmrl/{script}.sh", *args, out_root=tmp_path))

    tail = "caltech101/shots_16/MMRL/vit_b16/seed1"
    assert cmd("base2new_train", "caltech101", "1") == [_head("MMRL", "caltech101", "1", "vit_b16") + [
        "--output-dir", f"{tmp_path}/base2new/train_base/{tail}",
        "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base", "TASK", "B2N"]]
    assert cmd("base2new_test", "caltech101", "1") == [_head("MMRL", "caltech101", "1", "vit_b16") + [
        "--model-dir", f"{tmp_path}/base2new/train_base/{tail}", "--load-epoch", "10", "--eval-only",
        "--output-dir", f"{tmp_path}/base2new/test_new/{tail}",
        "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "new", "TASK", "B2N"]]
    (imagenet,) = cmd("base2new_train", "imagenet", "1")
    assert imagenet[imagenet.index("--config-file") + 1] == "configs/trainers/MMRL/vit_b16_imagenet.yaml"
    cd = ["TRAINER.MMRL.REG_WEIGHT", "0.2", "TRAINER.MMRL.REP_DIM", "512", "TASK", "CD"]
    model_dir = f"{tmp_path}/imagenet/MMRL/vit_b16_cross_datasets_16shots/seed1"
    assert cmd("xd_train", "imagenet", "1") == [_head("MMRL", "imagenet", "1", "vit_b16_cross_datasets") + [
        "--output-dir", model_dir, "DATASET.NUM_SHOTS", "16", *cd]]
    assert cmd("xd_test", "eurosat", "1") == [_head("MMRL", "eurosat", "1", "vit_b16_cross_datasets") + [
        "--model-dir", model_dir, "--load-epoch", "1", "--eval-only",
        "--output-dir", f"{tmp_path}/evaluation/MMRL/vit_b16_cross_datasets_16shots/eurosat/seed1", *cd]]
    few = cmd("few_shot", "dtd", "1", "2") + cmd("few_shot", "imagenet", "1", "2")
    assert [c[c.index("--config-file") + 1].split("/")[-1] for c in few] == ["vit_b16_few_shot.yaml",
                                                                            "vit_b16_imagenet.yaml"]
    assert all(c[-2:] == ["TASK", "FS"] for c in few)


@pytest.mark.parametrize("method", sorted(FEATURE_METHODS))
def test_feature_methods_few_shot_only(tmp_path, method):
    trainer = FEATURE_METHODS[method]
    assert (REPO / "configs" / "trainers" / trainer / "vit_b16.yaml").is_file()
    assert (REPO / "configs" / "trainers" / trainer / "rn50.yaml").is_file()
    cmds = commands(run(f"{method}/few_shot.sh", "caltech101", "1", "4", out_root=tmp_path))
    assert cmds == [_head(trainer, "caltech101", "1", "vit_b16") + [
        "--output-dir", f"{tmp_path}/caltech101/{trainer}/vit_b16_4shots/seed1", "DATASET.NUM_SHOTS", "4"]]
    other = run("run_all.sh", method, "base2new", out_root=tmp_path)
    assert other.returncode == 2 and "unknown protocol 'base2new'" in other.stderr
