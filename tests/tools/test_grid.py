"""tools/grid.py: a queue of train.py jobs on 2 CPU slots (waiting for the model a job loads, skipping finished
runs, reporting failures with their logs, tables at the end) and the same jobs through submitit's local executor.

A stand-in interpreter (a shell script) records when each job starts and ends, so the order and the number of jobs
at once are checked exactly. Real train.py jobs go through the same launcher in tests/scripts/test_run_scripts.py
(bash -> tools/grid.py -> python train.py on the toy data); a real two-slot grid here would cost a minute of the
suite, mostly two concurrent PyTorch start-ups on a 2-core machine.
"""
from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tools import grid

# the stand-in interpreter: logs "start|end <output dir> <time>", fails for dtd, else writes results.json
FAKE_PYTHON = """#!/usr/bin/env bash
while (($#)); do if [[ "$1" == --output-dir ]]; then out="$2"; fi; shift; done
echo "start $out $(date +%s.%N)" >> "$CALLS"
echo "working on $out"
sleep 0.4
if [[ "$out" == */dtd/* ]]; then echo "dataset not found" >&2; echo "end $out $(date +%s.%N)" >> "$CALLS"; exit 3; fi
mkdir -p "$out" && echo '{"accuracy": 50.0}' > "$out/results.json"
echo "end $out $(date +%s.%N)" >> "$CALLS"
"""


@pytest.fixture()
def fake_python(tmp_path, monkeypatch):
    path = tmp_path / "python.sh"
    path.write_text(FAKE_PYTHON)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CALLS", str(tmp_path / "calls.txt"))
    return path


def _events(tmp_path):
    """[(kind, dataset/phase, time)] in time order."""
    events = []
    for line in (tmp_path / "calls.txt").read_text().splitlines():
        kind, out, when = line.split()
        parts = Path(out).parts
        events.append((kind, f"{parts[-5]}/{parts[-6]}", float(when)))
    return sorted(events, key=lambda e: e[2])


def _env(tmp_path, python):
    return {"DATA": str(tmp_path / "data"), "OUTPUT_ROOT": str(tmp_path / "out"), "PYTHON": str(python)}


GRID = ["--methods", "coop", "--protocols", "base2new", "--datasets", "caltech101", "dtd", "oxford_pets",
        "--seeds", "1"]


def test_queue_two_slots_waits_for_models_skips_finished_and_reports_failures(tmp_path, fake_python, capsys):
    out = tmp_path / "out" / "base2new"
    finished = out / "train_base/caltech101/shots_16/CoOp/vit_b16_ctxv1/seed1"
    finished.mkdir(parents=True)
    (finished / "results.json").write_text(json.dumps({"accuracy": 1.0}))

    status = grid.main([*GRID, "--slots", "2"], env=_env(tmp_path, fake_python))
    err = capsys.readouterr().err

    assert status == 1
    events = _events(tmp_path)
    started = [name for kind, name, _ in events if kind == "start"]
    # the finished training is skipped; its evaluation, dtd's and oxford_pets' trainings and pets' evaluation run
    assert sorted(started) == ["caltech101/test_new", "dtd/train_base", "oxford_pets/test_new",
                               "oxford_pets/train_base"]
    assert "skip this job" in err and str(finished) in err
    running, most = 0, 0
    for kind, _, _ in events:
        running += 1 if kind == "start" else -1
        most = max(most, running)
    assert most == 2  # two slots, both used
    when = {(kind, name): t for kind, name, t in events}
    assert when["start", "oxford_pets/test_new"] >= when["end", "oxford_pets/train_base"]
    # dtd's training fails: its evaluation is not run, both are reported, the log holds the job's output
    log = out / "train_base/dtd/shots_16/CoOp/vit_b16_ctxv1/seed1.log"
    assert "dtd/test_new" not in started
    assert f"train.py stopped with exit status 3, log: {log}" in err
    assert "test_new/dtd/shots_16/CoOp/vit_b16_ctxv1/seed1: not run, the model it loads" in err
    assert "ERROR: 2 job(s) failed" in err
    text = log.read_text()
    assert "train.py" in text and "working on" in text and "dataset not found" in text
    assert "[grid] 1 done, 2 running, 0 failed, 3 left of 6; ETA unknown" in err
    assert "[grid] 4 done, 0 running, 2 failed, 0 left of 6; ETA 0:00:00" in err
    assert "ETA 0:00:0" in err.split("[grid] 2 done", 1)[1].splitlines()[0]  # an estimate once a job ran
    # the tables of the finished runs, written into the output tree
    assert (tmp_path / "out" / "tables" / "tables.md").is_file()

    # the same command again runs only what failed (the stand-in fails again)
    (tmp_path / "calls.txt").unlink()
    assert grid.main([*GRID, "--slots", "2"], env=_env(tmp_path, fake_python)) == 1
    assert sorted(name for kind, name, _ in _events(tmp_path) if kind == "start") == ["dtd/train_base"]


def test_gpus_give_each_job_its_own_device(tmp_path, monkeypatch):
    seen = []

    class Done:
        def poll(self):
            return 0

    def launch(command, slot_env, log):
        out = command[command.index("--output-dir") + 1]
        seen.append((Path(out).parts[-5], slot_env["CUDA_VISIBLE_DEVICES"]))
        Path(out).mkdir(parents=True)
        (Path(out) / "results.json").write_text("{}")
        return Done()

    env = _env(tmp_path, "python")
    assert grid.main([*GRID[:6], "dtd", "--seeds", "1", "--gpus", "2,5"], env=env, launch=launch) == 0
    assert [gpu for _, gpu in seen] == ["2", "5", "2", "5"]


def test_dry_run_prints_every_unfinished_command(tmp_path, capsys):
    status = grid.main([*GRID, "--dry-run"], env=_env(tmp_path, "python"))
    lines = capsys.readouterr().out.splitlines()
    assert status == 0 and len(lines) == 6 and all(line.startswith("python train.py") for line in lines)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["--methods", "nope", "--protocols", "base2new"], "invalid choice: 'nope'"),
    (["--methods", "coop", "--protocols", "base2new", "--gpus", "0,a"], "--gpus takes comma-separated GPU ids"),
    (["--methods", "coop", "--protocols", "base2new", "--slots", "0"], "--slots must be at least 1"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        grid.main(argv, env=_env(tmp_path, "python"))
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_missing_model_and_data_are_refused_before_anything_runs(tmp_path, capsys):
    env = {**_env(tmp_path, "python"), "DATA": ""}
    assert grid.main([*GRID, "--slots", "2"], env=env) == 1
    assert "DATA is not set" in capsys.readouterr().err
    # an evaluation whose model no job of the call trains: the model must already exist
    jobs = [grid.Job("out/a", ["--output-dir", "out/a"], needs=str(tmp_path / "missing"))]
    with pytest.raises(grid.ScriptError, match="model directory not found: .*missing"):
        grid.run_local(jobs, {}, [{}], logs=False)


def test_slurm_path_through_submitit_local_executor(tmp_path, fake_python, capsys):
    pytest.importorskip("submitit")  # in requirements.txt; the import error names the fix for users without it
    for phase in ("train_base", "test_new"):  # oxford_pets' pair has finished
        finished = tmp_path / f"out/base2new/{phase}/oxford_pets/shots_16/CoOp/vit_b16_ctxv1/seed1"
        finished.mkdir(parents=True)
        (finished / "results.json").write_text("{}")

    argv = [*GRID, "--slurm", "--cluster", "local", "--gpus-per-job", "0", "--time", "5", "--poll-seconds", "0.5"]
    status = grid.main(argv, env=_env(tmp_path, fake_python))
    err = capsys.readouterr().err

    assert status == 1
    events = _events(tmp_path)
    assert sorted(name for kind, name, _ in events if kind == "start") == [
        "caltech101/test_new", "caltech101/train_base", "dtd/train_base"]
    when = {(kind, name): t for kind, name, t in events}
    assert when["start", "caltech101/test_new"] >= when["end", "caltech101/train_base"]  # one task, in order
    assert "Submitted 2 task(s) with 4 job(s)" in err  # pets' finished pair is not submitted
    assert "[grid] 4 done, 0 running, 2 failed, 0 left of 6" in err
    failed = [line for line in err.splitlines() if "not finished, task log:" in line]
    assert len(failed) == 2 and all("/dtd/" in line for line in failed)
    task_log = Path(failed[0].split("task log: ")[1].split(" and ")[0])
    assert task_log.is_file() and "working on" in task_log.read_text()
    assert "dataset not found" in Path(failed[0].split(" and ")[1]).read_text()
