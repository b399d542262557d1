"""The output folder (OUT) of a run, guarded: never an input, never shared, never emptied blindly.

`check_out` refuses an OUT that is a file, cannot be written, or contains (or is) one of the
run's inputs, before anything is written. `OutLock` keeps a second process off an OUT in use.
`remove_outputs` deletes only the entries a run of vpgtrans makes, and crash leftovers.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..errors import VPGTransError

LOCK_NAME = ".vpgtrans.lock"
LEFTOVERS = (".*.tmp", ".*.old")  # atomic writes interrupted by a kill (io/atomic.py)


def check_run_control(resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise VPGTransError("--resume and --overwrite contradict each other: continue OUT's run, or start afresh")


def check_out(out: str | Path, inputs: Iterable[str | Path | None] = ()) -> None:
    """OUT must be a folder or not exist yet, be writable, and hold none of the inputs."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VPGTransError(f"{out}: OUT is a file; give a folder")
    resolved = out.resolve()
    for item in inputs:
        if item is None or not Path(item).exists():
            continue  # a hub id or preset name: not a path on this machine
        path = Path(item).resolve()
        if path == resolved or resolved in path.parents:
            raise VPGTransError(f"{out}: OUT contains the input {item}; choose an OUT outside your data and models")
    existing = next(p for p in (resolved, *resolved.parents) if p.exists())
    try:
        fd, probe = tempfile.mkstemp(prefix=".vpgtrans-write-test.", dir=existing)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise VPGTransError(f"{out}: cannot write OUT ({existing} is not writable: {exc.strerror})") from exc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutLock:
    """`OUT/.vpgtrans.lock` holding the owner's pid; a lock whose process is gone is stale and taken over."""

    def __init__(self, out: str | Path):
        self.path = Path(out) / LOCK_NAME
        self.held = False

    def acquire(self) -> OutLock:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                text = self.path.read_text().strip() if self.path.exists() else ""
                owner = int(text) if text.isdigit() else None
                if owner is not None and owner != os.getpid() and _alive(owner):
                    raise VPGTransError(
                        f"{self.path.parent}: OUT is in use by process {owner} (lock {self.path}); wait for it to "
                        "finish or stop it, or choose another OUT"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            self.held = True
            atexit.register(self.release)
            return self
        raise VPGTransError(f"{self.path}: cannot take the lock on OUT")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def remove_leftovers(folder: Path) -> None:
    """Temporary copies left by an interrupted atomic write (a model copy can be gigabytes)."""
    remove_outputs(folder, ())


def remove_outputs(out: Path, outputs: Iterable[str]) -> None:
    """Delete the entries (names or glob patterns) a run makes in OUT, and crash leftovers; nothing else."""
    for pattern in (*outputs, *LEFTOVERS):
        for path in out.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
