"""Run many train.py jobs: the scripts' calls, and whole grids of methods x protocols x datasets x seeds.

Every script in scripts/ ends here (``scripts/run.sh`` execs ``python tools/grid.py --script <path> ARGS``): its
jobs come from :func:`tools.protocols.plan` and run one after the other in this terminal. A grid is the same jobs
for several methods and protocols at once::

    DATA=/data python tools/grid.py --methods maple coop --protocols base2new xd --seeds 1 2 3 --gpus 0,1,2,3
    DATA=/data python tools/grid.py --methods maple --protocols base2new --slurm --partition gpu --time 240
    DATA=/data python tools/grid.py --methods maple --protocols base2new --dry-run

``--gpus`` keeps one job on each listed GPU (``CUDA_VISIBLE_DEVICES`` per job) and starts the next one from the
queue when a GPU frees up; ``--slots N`` does the same with N jobs on the CPU. A job that loads a model (an
evaluation) starts once the job training that model has finished. ``--slurm`` submits the jobs through submitit
as one array: each element runs a training job and the evaluations that load its model. Finished jobs (their
results.json exists) are skipped and unfinished ones resume from their last checkpoint, so rerunning the same
command after a crash, a timeout or a Ctrl-C only runs what is left. The grid ends with the failures and their
log files, then tools/make_tables.py over the output tree (tables and plots in <OUTPUT_ROOT>/tables).
The environment variables are the scripts' (README, "Real experiments"): DATA, OUTPUT_ROOT, EXTRA_OPTS, SHOTS...
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.protocols import GRIDS, REPO, SCRIPTS, Job, ScriptError, is_finished, plan  # noqa: E402

Launch = Callable[[List[str], Dict[str, str], Optional[Path]], "subprocess.Popen"]


def grid_jobs(methods: Sequence[str], protocols: Sequence[str], env: Mapping[str, str]) -> List[Job]:
    """The jobs of ``scripts/run_all.sh METHOD PROTOCOL`` for every pair, each output folder once."""
    jobs: Dict[str, Job] = {}
    for method in methods:
        for protocol in protocols:
            for job in plan("scripts/run_all.sh", [method, protocol], env):
                jobs.setdefault(os.path.normpath(job.out), job)  # xd and dg train the same ImageNet model
    return list(jobs.values())


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts of done / running / failed / left jobs and an ETA from the jobs that ran in this call."""

    def __init__(self, total: int, workers: int):
        self.total, self.workers = total, max(workers, 1)
        self.done = self.failed = self.running = 0
        self.durations: List[float] = []

    def line(self) -> str:
        left = self.total - self.done - self.failed - self.running
        if self.durations and left + self.running:
            mean = sum(self.durations) / len(self.durations)
            eta = _duration(mean * (left + self.running) / min(self.workers, left + self.running))
        else:
            eta = "unknown" if left + self.running else "0:00:00"
        return (f"[grid] {self.done} done, {self.running} running, {self.failed} failed, {left} left "
                f"of {self.total}; ETA {eta}")

    def show(self) -> None:
        print(self.line(), file=sys.stderr, flush=True)


def _start(command: List[str], slot_env: Dict[str, str], log: Optional[Path]) -> "subprocess.Popen":
    """A job as a subprocess in the repository root; its output goes to ``log`` (appended) or this terminal."""
    if log is None:
        return subprocess.Popen(command, cwd=REPO, env={**os.environ, **slot_env})
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as stream:
        stream.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(command)}\n")
        stream.flush()
        return subprocess.Popen(command, cwd=REPO, env={**os.environ, **slot_env}, stdout=stream,
                                stderr=subprocess.STDOUT)


def job_log(job: Job) -> Path:
    """Where a grid job's output goes: ``<output folder>.log``, beside the run's own folder."""
    return REPO / f"{os.path.normpath(job.out)}.log"


def _producers(jobs: Sequence[Job]) -> Dict[str, Job]:
    """Output folder -> job, for the jobs other jobs load their model from."""
    outs = {os.path.normpath(job.out): job for job in jobs}
    return {os.path.normpath(job.needs): outs[os.path.normpath(job.needs)] for job in jobs
            if job.needs and os.path.normpath(job.needs) in outs}


def check_needs(jobs: Sequence[Job]) -> None:
    """Every model a job loads exists or is trained by a job of the same call (else a ScriptError)."""
    produced = _producers(jobs)
    missing = sorted({job.needs for job in jobs if job.needs and os.path.normpath(job.needs) not in produced
                      and not (REPO / job.needs).is_dir()})
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise ScriptError(f"model directory not found: {missing[0]}{more} (train the model first)")


def run_local(jobs: Sequence[Job], env: Mapping[str, str], slots: Sequence[Dict[str, str]], logs: bool,
              launch: Optional[Launch] = None, poll_s: float = 0.2) -> List[str]:
    """Run the jobs on ``slots`` (one job per slot at a time, each slot's environment added to the job's);
    returns one line per failed job. Under ``logs`` each job writes to :func:`job_log`, else to this terminal."""
    python = (env.get("PYTHON") or "python").split()
    check_needs(jobs)
    produced = _producers(jobs)
    progress = Progress(len(jobs), len(slots))
    pending: List[Job] = []
    for job in jobs:
        if is_finished(job.out):
            print(f"Results exist in {job.out}/results.json: skip this job (delete the folder to run it again)",
                  file=sys.stderr)
            progress.done += 1
        else:
            pending.append(job)
    state: Dict[str, str] = {os.path.normpath(job.out): "done" for job in jobs if job not in pending}
    free, running, failures = list(slots), [], []
    while pending or running:
        changed = False
        for entry in list(running):
            job, process, slot, started = entry
            status = process.poll()
            if status is None:
                continue
            running.remove(entry)
            free.append(slot)
            progress.running -= 1
            changed = True
            if status == 0:
                state[os.path.normpath(job.out)] = "done"
                progress.done += 1
                progress.durations.append(time.monotonic() - started)
            else:
                state[os.path.normpath(job.out)] = "failed"
                progress.failed += 1
                where = f", log: {job_log(job)}" if logs else ""
                failures.append(f"{job.out}: train.py stopped with exit status {status}{where}")
        for job in list(pending):  # start what can start, in the order of the list
            producer = produced.get(os.path.normpath(job.needs)) if job.needs else None
            waits_for = state.get(os.path.normpath(producer.out)) if producer else "done"
            if waits_for == "failed":
                pending.remove(job)
                state[os.path.normpath(job.out)] = "failed"
                failures.append(f"{job.out}: not run, the model it loads ({job.needs}) failed to train")
                progress.failed += 1
                changed = True
            elif waits_for == "done" and free:
                pending.remove(job)
                slot = free.pop(0)
                command = [*python, "train.py", *job.argv]
                where = f" on GPU {slot['CUDA_VISIBLE_DEVICES']}" if slot.get("CUDA_VISIBLE_DEVICES") else ""
                print(("Resume the unfinished job in " if (REPO / job.out).is_dir() else
                       "Run this job and save the output to ") + job.out + where, file=sys.stderr, flush=True)
                try:
                    process = (launch or _start)(command, slot, job_log(job) if logs else None)
                except OSError as err:
                    raise ScriptError(f"cannot start {command[0]} ({err.strerror}): set PYTHON to a Python "
                                      "interpreter") from None
                running.append((job, process, slot, time.monotonic()))
                progress.running += 1
                changed = True
        if changed and len(jobs) > 1:
            progress.show()
        if running and not changed:
            time.sleep(poll_s)
    return failures


class ChainRunner:
    """One SLURM task: a training job, then the jobs that load its model, each skipped when finished.

    Submitted through submitit as a checkpointable callable: when SLURM stops the task at its time limit,
    submitit requeues it and the unfinished job resumes from its last checkpoint."""

    def __init__(self, chain: Sequence[Job], python: str):
        self.chain, self.python = [tuple(job) for job in chain], python

    def __call__(self) -> List[str]:
        failed: List[str] = []
        for out, argv, needs in self.chain:
            if is_finished(out):
                continue
            if needs and os.path.normpath(needs) in failed:
                print(f"{out}: not run, the model it loads ({needs}) failed to train", flush=True)
                failed.append(os.path.normpath(out))
                continue
            command = [*self.python.split(), "train.py", *argv]
            print(f"=== {shlex.join(command)}", flush=True)
            if subprocess.run(command, cwd=REPO).returncode:
                failed.append(os.path.normpath(out))
        if failed:
            raise RuntimeError(f"train.py failed in {len(failed)} job(s): {' '.join(failed)}")
        return [out for out, _, _ in self.chain]

    def checkpoint(self):  # submitit calls this when the task is about to be stopped; run it again from the top
        import submitit

        return submitit.helpers.DelayedSubmission(ChainRunner(self.chain, self.python))


def chains(jobs: Sequence[Job]) -> List[List[Job]]:
    """The jobs grouped so that each job comes after the job training the model it loads (same group)."""
    produced = _producers(jobs)
    groups: Dict[str, List[Job]] = {}
    for job in jobs:
        root = job
        while root.needs and os.path.normpath(root.needs) in produced:
            root = produced[os.path.normpath(root.needs)]
        groups.setdefault(os.path.normpath(root.out), []).append(job)
    return [sorted(group, key=lambda job: job.needs != "" and os.path.normpath(job.needs) in produced)
            for group in groups.values()]


def run_slurm(jobs: Sequence[Job], env: Mapping[str, str], options: argparse.Namespace) -> List[str]:
    """Submit the unfinished jobs through submitit (one array element per chain), wait, return the failures."""
    try:
        import submitit
    except ImportError:
        raise ScriptError("--slurm needs submitit: pip install -r requirements.txt") from None
    check_needs(jobs)
    groups = [chain for chain in chains(jobs) if not all(is_finished(job.out) for job in chain)]
    progress = Progress(len(jobs), options.array_size)
    if not groups:
        progress.done = len(jobs)
        progress.show()
        return []
    folder = Path(env.get("OUTPUT_ROOT") or "output") / "slurm" / time.strftime("%Y%m%d-%H%M%S")
    executor = submitit.AutoExecutor(folder=REPO / folder, cluster=options.cluster)
    executor.update_parameters(name="prompt-clip", timeout_min=options.time, gpus_per_node=options.gpus_per_job,
                               cpus_per_task=options.cpus_per_job, slurm_partition=options.partition,
                               slurm_array_parallelism=options.array_size)
    # the tasks import tools.grid: make the repository importable wherever they start
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    python = env.get("PYTHON") or sys.executable
    with executor.batch():
        submitted = [executor.submit(ChainRunner(chain, python)) for chain in groups]
    print(f"Submitted {len(groups)} task(s) with {sum(map(len, groups))} job(s); logs in {folder}",
          file=sys.stderr, flush=True)
    started, last = time.monotonic(), ""
    while True:
        finished = [job for job in submitted if job.done()]
        progress.done = sum(is_finished(job.out) for job in jobs)
        progress.failed = sum(len(chain) - sum(is_finished(job.out) for job in chain)
                              for chain, task in zip(groups, submitted) if task in finished)
        progress.running = sum(task.state == "RUNNING" for task in submitted if task not in finished)
        if progress.done:
            progress.durations = [(time.monotonic() - started) / progress.done * progress.workers]
        line = progress.line()
        if line != last:
            print(line, file=sys.stderr, flush=True)
            last = line
        if len(finished) == len(submitted):
            break
        time.sleep(options.poll_seconds)
    failures = []
    for chain, task in zip(groups, submitted):
        if task.exception() is not None:
            failures += [f"{job.out}: not finished, task log: {task.paths.stdout} and {task.paths.stderr}"
                         for job in chain if not is_finished(job.out)]
    return failures


def _report(failures: Sequence[str]) -> int:
    if failures:
        print(f"ERROR: {len(failures)} job(s) failed:", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
    return 1 if failures else 0


def run_script(script: str, args: Sequence[str], env: Mapping[str, str], launch: Optional[Launch] = None) -> int:
    """``bash SCRIPT ARGS...``: its jobs one after the other in this terminal (DRY_RUN=1: the commands)."""
    jobs = plan(script, args, env)
    if env.get("DRY_RUN") == "1":
        return print_plan(jobs, env)
    return _report(run_local(jobs, env, [{}], logs=False, launch=launch))


def print_plan(jobs: Sequence[Job], env: Mapping[str, str]) -> int:
    """The commands of the unfinished jobs on stdout, one per line; finished ones are named on stderr."""
    python = (env.get("PYTHON") or "python").split()
    for job in jobs:
        if is_finished(job.out):
            print(f"Results exist in {job.out}/results.json: skip this job (delete the folder to run it again)",
                  file=sys.stderr)
        else:
            print(shlex.join([*python, "train.py", *job.argv]), flush=True)
    return 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--methods", nargs="+", required=True, choices=[m for m in SCRIPTS if m != "zsclip"], metavar="METHOD",
        help="scripts/ folders: " + " ".join(m for m in SCRIPTS if m != "zsclip"))
    add("--protocols", nargs="+", required=True, choices=list(GRIDS), metavar="PROTOCOL",
        help="run_all.sh protocols: " + " ".join(GRIDS))
    add("--datasets", nargs="+", default=None, help="datasets (default: each protocol's own, as run_all.sh)")
    add("--seeds", nargs="+", default=None, help="seeds (default: SEEDS, else 1 2 3)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--gpus", default=None, help="comma-separated GPU ids, one job on each at a time")
    where.add_argument("--slots", type=int, default=None, help="number of jobs at a time on the CPU")
    where.add_argument("--slurm", action="store_true", help="submit through submitit to SLURM")
    add("--dry-run", action="store_true", help="print the commands of the unfinished jobs and stop")
    slurm = parser.add_argument_group("SLURM (with --slurm)")
    slurm.add_argument("--partition", default=None, help="SLURM partition")
    slurm.add_argument("--time", type=int, default=240, help="minutes per array element (240)")
    slurm.add_argument("--gpus-per-job", type=int, default=1, help="GPUs per array element (1)")
    slurm.add_argument("--cpus-per-job", type=int, default=8, help="CPU cores per array element (8)")
    slurm.add_argument("--array-size", type=int, default=16, help="array elements running at once (16)")
    slurm.add_argument("--cluster", default=None, choices=["slurm", "local"],
                       help="submitit executor (default: SLURM when sbatch is found; local runs the tasks here)")
    slurm.add_argument("--poll-seconds", type=float, default=30.0, help="seconds between progress checks (30)")
    options = parser.parse_args(argv)
    if options.gpus is not None and not all(g.strip().isdigit() for g in options.gpus.split(",")):
        parser.error(f"--gpus takes comma-separated GPU ids such as 0,1,2,3, got '{options.gpus}'")
    if options.slots is not None and options.slots < 1:
        parser.error(f"--slots must be at least 1, got {options.slots}")
    return options


def main(argv: Optional[Sequence[str]] = None, env: Optional[Mapping[str, str]] = None,
         launch: Optional[Launch] = None) -> int:
    """Returns the exit status; bad input prints one line on stderr."""
    argv = sys.argv[1:] if argv is None else list(argv)
    env = dict(os.environ if env is None else env)
    try:
        if argv[:1] == ["--script"]:
            return run_script(argv[1] if argv[1:] else "scripts/run.sh", argv[2:], env, launch)
        options = parse_args(argv)
        if options.datasets:
            env["DATASETS"] = " ".join(options.datasets)
        if options.seeds:
            env["SEEDS"] = " ".join(options.seeds)
        jobs = grid_jobs(options.methods, options.protocols, env)
        if options.dry_run:
            return print_plan(jobs, env)
        if options.slurm:
            failures = run_slurm(jobs, env, options)
        else:
            slots = ([{"CUDA_VISIBLE_DEVICES": g.strip()} for g in options.gpus.split(",")] if options.gpus
                     else [{}] * (options.slots or 1))
            failures = run_local(jobs, env, slots, logs=True, launch=launch)
        status = _report(failures)
        root = REPO / (env.get("OUTPUT_ROOT") or "output")
        if root.is_dir():
            from tools.make_tables import main as make_tables

            make_tables([str(root), "--out", str(root / "tables"), "--plot"])
        return status
    except ScriptError as err:
        message, status = (*err.args, 1)[:2]
        print(message if message.startswith("usage:") else f"ERROR: {message}", file=sys.stderr)
        return status
    except KeyboardInterrupt:  # Ctrl-C reaches the jobs too; rerunning the same command resumes them
        return 130


if __name__ == "__main__":
    sys.exit(main())
