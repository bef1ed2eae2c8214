"""``python killed_run.py WHERE TRAIN_ARGS...``: ``train.main(TRAIN_ARGS)``, killed by SIGKILL at ``WHERE``:

    step:E:B   right after batch B of epoch E (both 1-based) was trained
    save:E     while epoch E's checkpoint is written: its temp file is complete, not yet renamed

For the resume tests, which need kills at exact points; one test also kills a plain train.py from outside.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import fileio  # noqa: E402
import train  # noqa: E402
from engine import hooks  # noqa: E402


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(where: str, argv) -> None:
    kind, *numbers = where.split(":")
    if kind == "step":
        epoch, batch = (int(n) for n in numbers)

        class KillHook(hooks.HookBase):
            def after_step(self) -> None:
                if (self.trainer.epoch + 1, self.trainer.batch_idx + 1) == (epoch, batch):
                    _die()

        default = hooks.default_hooks
        train_hooks = lambda: [*default(), KillHook()]  # noqa: E731
        import engine.trainer
        engine.trainer.default_hooks = train_hooks
    elif kind == "save":
        replace = os.replace

        def replace_then_die(src, dst):
            if str(dst).endswith(f"model.pth.tar-{numbers[0]}"):
                _die()
            replace(src, dst)

        fileio.os.replace = replace_then_die
    else:
        raise SystemExit(f"unknown kill point {where!r}")
    train.main(argv)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
