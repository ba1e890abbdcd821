"""Background processes that outlive the command that started them (Prometheus, the simulator).

``vigil dev up`` returns while Prometheus and the simulator keep running, so their pids live in
files under the sandbox's state directory. A pid alone is not an identity (pids are reused), so
each record also keeps the exact command line, compared with ``/proc/<pid>/cmdline`` before the
process is trusted or signalled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence

# Children started by this Python process, kept so that they are reaped when they exit (a long
# test session would otherwise keep zombies that look alive in /proc).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class Timeout(RuntimeError):
    """A condition was not met before its deadline; the message names the condition."""


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll ``predicate`` until it holds; raise :class:`Timeout` naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise Timeout(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return None
    if state in ("Z", "X"):
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def same_command(left: Sequence[str] | None, right: Sequence[str] | None) -> bool:
    """Equal command lines, the program compared by real path (``python`` vs ``python3.11``) and by the
    directory it was named in: every virtualenv's ``python`` resolves to the same interpreter, but
    another checkout's ``.venv/bin/python`` runs another checkout's code (a simulator started from one
    worktree must not be taken for this one's)."""
    if not left or not right:
        return False
    same_program = os.path.realpath(left[0]) == os.path.realpath(right[0])
    same_place = os.path.realpath(os.path.dirname(left[0])) == os.path.realpath(os.path.dirname(right[0]))
    return same_program and same_place and list(left[1:]) == list(right[1:])


@dataclasses.dataclass(frozen=True)
class Background:
    """One named background process with its pid record and log file under ``state_dir``."""

    name: str
    state_dir: pathlib.Path

    @property
    def pid_file(self) -> pathlib.Path:
        return self.state_dir / "pids" / f"{self.name}.json"

    @property
    def log_file(self) -> pathlib.Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    def _record(self) -> tuple[int, list[str]] | None:
        try:
            data = json.loads(self.pid_file.read_text())
            return int(data["pid"]), [str(part) for part in data["argv"]]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def pid(self) -> int | None:
        """The pid of the recorded process if it still runs the recorded command line."""
        record = self._record()
        if record is None:
            return None
        pid, argv = record
        child = _CHILDREN.get(pid)
        if child is not None:
            # Our own child: trust Popen (right after fork /proc still shows our command line).
            return pid if child.poll() is None else None
        return pid if same_command(_cmdline(pid), argv) else None

    def argv(self) -> list[str] | None:
        record = self._record()
        return record[1] if record else None

    def runs(self, argv: Sequence[str]) -> bool:
        """Whether the recorded process is alive and runs ``argv``."""
        return self.alive() and same_command(self.argv(), argv)

    def alive(self) -> bool:
        return self.pid() is not None

    def start(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
        """Start ``argv`` detached (own session, output to the log file) and record its pid."""
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            # A new session: Ctrl-C in the terminal that ran `vigil dev up` must not stop it.
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        _CHILDREN[proc.pid] = proc
        self.pid_file.write_text(json.dumps({"pid": proc.pid, "argv": list(argv)}))
        return proc.pid

    def exited(self) -> int | None:
        """The exit code if this process was started by us and has exited, else None."""
        record = self._record()
        if record is None:
            return None
        child = _CHILDREN.get(record[0])
        return child.poll() if child is not None else None

    def stop(self, timeout: float = 15.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout``; True if a process was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        try:
            wait_for(lambda: self.pid() is None, timeout, f"{self.name} (pid {pid}) to exit")
        except Timeout:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            wait_for(lambda: self.pid() is None, 5.0, f"{self.name} (pid {pid}) to die")
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""
