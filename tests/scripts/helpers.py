"""Shared helpers of the script tests: run a wrapper in a subprocess (DRY_RUN by default), split its commands."""
from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Variables the scripts read: a value left in the caller's environment must not leak into a test.
_PROTOCOL_ENV = {"DATA", "DRY_RUN", "EXTRA_OPTS", "SEEDS", "CFG", "SHOTS", "NCTX", "CSC", "CTP", "LOADEP", "SUB",
                 "OUTPUT_ROOT", "PYTHON", "SRC_DATASET", "SHOTS_LIST", "DATASETS", "VARIANT"}


def run(script: str, *args: str, env: dict[str, str] | None = None, data: str | None = "/datasets",
         dry: bool = True, out_root: Path | None = None, cwd: str = "/") -> subprocess.CompletedProcess:
    """Run scripts/<script> with a clean protocol environment; DRY_RUN=1 unless ``dry`` is False."""
    full_env = {k: v for k, v in os.environ.items() if k not in _PROTOCOL_ENV}
    if data is not None:
        full_env["DATA"] = data
    if dry:
        full_env["DRY_RUN"] = "1"
    if out_root is not None:
        full_env["OUTPUT_ROOT"] = str(out_root)
    full_env.update(env or {})
    # scripts/run.sh starts the runner with `python`: make that the interpreter running the tests (not a slow shim)
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
    # Run from elsewhere: the scripts must cd to the repository root themselves.
    return subprocess.run(["bash", str(REPO / "scripts" / script), *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=60)


def commands(proc: subprocess.CompletedProcess) -> list[list[str]]:
    """The command lines a dry run printed (after checking it succeeded), each split like the shell would."""
    assert proc.returncode == 0, proc.stderr
    return [shlex.split(line) for line in proc.stdout.splitlines() if line.strip()]


def stub_python(tmp_path: Path) -> Path:
    """A fake interpreter: records its arguments and writes results.json into --output-dir like train.py."""
    stub = tmp_path / "fake_python.sh"
    stub.write_text(
        "#!/usr/bin/env bash\nset -euo pipefail\n"
        'echo "$PWD $*" >> "$CALLS"\n'
        'while (($#)); do if [[ "$1" == --output-dir ]]; then out="$2"; fi; shift; done\n'
        'mkdir -p "$out" && echo \'{"accuracy": 50.0}\' > "$out/results.json"\n'
    )
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    return stub
