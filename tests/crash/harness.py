"""Starting and killing child worker processes, one after another, on one store file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .verify import unfinished_runs

CHILD = Path(__file__).resolve().parent / "child.py"


@dataclass
class Exit:
    pid: int
    code: int
    stdout: str

    @property
    def killed(self) -> bool:
        return self.code == -signal.SIGKILL

    def started(self) -> dict[int, str]:
        """job -> run id, for each `app.start()` that returned before the child ended."""
        acked = {}
        for line in self.stdout.splitlines():
            if line.startswith("started "):
                _, job, run_id = line.split()
                acked[int(job)] = run_id
        return acked


@dataclass
class Bench:
    """One store file, one side-effect log, and the pids of the children in start order.

    Children never overlap: each one is waited for (and reaped) before the next starts, so a
    child's position in `pids` is its place in time.
    """

    root: Path
    pids: list[int] = field(default_factory=list)
    child: Path = CHILD  # the worker script each child process runs

    @property
    def store(self) -> Path:
        return self.root / "baton.db"

    @property
    def log(self) -> Path:
        return self.root / "effects.log"

    @property
    def stderr_path(self) -> Path:
        return self.root / "children.stderr"

    def spawn(self, mode: str, *options: str) -> subprocess.Popen[str]:
        with self.stderr_path.open("a") as stderr:
            proc = subprocess.Popen(
                [sys.executable, str(self.child), str(self.store), str(self.log), mode, *options],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self.pids.append(proc.pid)
        return proc

    def run(self, mode: str, *options: str, timeout: float = 60.0) -> Exit:
        """Run a child to its end (or its own SIGKILL)."""
        proc = self.spawn(mode, *options)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            stuck = unfinished_runs(self.store) if self.store.exists() else []
            raise AssertionError(
                f"child {proc.pid} ({mode} {' '.join(options)}) still running after "
                f"{timeout}s; {len(stuck)} unfinished run(s) (key, run_id, status, owner, "
                f"fence, attempt): {stuck[:10]}\nstderr tail:\n{self.stderr_tail()}"
            ) from None
        return Exit(proc.pid, proc.returncode, out)

    def kill_after_ready(self, delay: float, mode: str, *options: str) -> Exit:
        """Start a child and SIGKILL it `delay` seconds after it prints `ready` (it may have
        finished its work and exited by then: its code is then 0)."""
        proc = self.spawn(mode, *options)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            proc.wait()
            raise AssertionError(
                f"child {proc.pid} did not get ready (said {line!r}); "
                f"stderr tail:\n{self.stderr_tail()}"
            )
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)  # not reaped yet, so the pid is still this child's
        out = proc.stdout.read()
        proc.wait()
        return Exit(proc.pid, proc.returncode, out)

    def recover(self, timeout: float = 60.0) -> Exit:
        """A fresh child that launches, finishes every unfinished run and exits cleanly."""
        done = self.run("recover", timeout=timeout)
        assert done.code == 0, (
            f"recovery child exited with {done.code}; stderr:\n{self.stderr_tail()}"
        )
        return done

    def stderr_tail(self, lines: int = 40) -> str:
        if not self.stderr_path.exists():
            return "(none)"
        return "\n".join(self.stderr_path.read_text().splitlines()[-lines:])


def jobs_arg(jobs: Iterable[int]) -> str:
    return ",".join(str(j) for j in jobs)
