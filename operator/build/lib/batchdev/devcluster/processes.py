"""Detached server processes and loopback ports: start, recognise, stop, with deadlines.

Invariants:

* Each server runs in its own session, so it is the leader of its own process group: it
  survives the ``batchcert-dev cluster up`` process that started it, a Ctrl-C in that terminal
  does not reach it, and stopping signals the whole group.
* A process is identified by its pid *and* its start time (``/proc/<pid>/stat``), so a recorded
  pid that the kernel has since reused for an unrelated process is treated as dead and never
  signalled. A zombie counts as dead: it holds no port and does no work.
* Every wait has a deadline; stopping escalates from SIGTERM to SIGKILL and reports a survivor
  instead of waiting forever.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from batchdev.devcluster.errors import ClusterStopError

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ProcessRecord:
    """What the state dir remembers about one server process."""

    name: str
    pid: int
    # Field 22 of /proc/<pid>/stat (clock ticks after boot); None where /proc is unavailable.
    start_time: int | None


@dataclass(frozen=True)
class ProcStat:
    state: str
    start_time: int


def parse_proc_stat(text: str) -> ProcStat:
    """Parse ``/proc/<pid>/stat``; the command name may itself contain spaces and parentheses."""
    after_name = text[text.rindex(")") + 2 :].split()
    # after_name[0] is field 3 (state); field 22 (starttime) is therefore after_name[19].
    return ProcStat(state=after_name[0], start_time=int(after_name[19]))


def read_proc_stat(pid: int) -> ProcStat | None:
    try:
        return parse_proc_stat(Path(f"/proc/{pid}/stat").read_text())
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return None


def is_same_live_process(record: ProcessRecord, stat: ProcStat | None) -> bool:
    """Whether ``stat`` (read now for ``record.pid``) is the recorded process, still running."""
    if stat is None or stat.state in ("Z", "X"):
        return False
    return record.start_time is None or stat.start_time == record.start_time


def is_alive(record: ProcessRecord) -> bool:
    if not Path("/proc/self/stat").exists():  # not Linux: fall back to "some process has the pid"
        try:
            os.kill(record.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return is_same_live_process(record, read_proc_stat(record.pid))


def start_detached(
    name: str,
    argv: list[str],
    log_path: Path,
    *,
    die_with_parent: bool = False,
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
    """Start ``argv`` in a new session with stdout and stderr appended to ``log_path``.

    ``die_with_parent`` asks the kernel to SIGKILL the server if the starting process dies
    (Linux ``PR_SET_PDEATHSIG``): a test run that is itself killed must not leave a control plane
    behind with nobody holding its state dir. The CLI leaves it off: there the servers must
    outlive ``up``.
    """
    preexec = _die_with_parent(os.getpid()) if die_with_parent else None
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=dict(env) if env is not None else None,
            # Safe despite threads: the hook only calls prctl and getppid.
            preexec_fn=preexec,
        )
    stat = read_proc_stat(proc.pid)
    return proc, ProcessRecord(name, proc.pid, stat.start_time if stat else None)


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def set_parent_death_signal() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return set_parent_death_signal


def stop_process(
    record: ProcessRecord,
    *,
    handle: subprocess.Popen[bytes] | None = None,
    grace: float = 15.0,
) -> None:
    """Stop ``record``'s process group: SIGTERM, then SIGKILL after ``grace`` seconds.

    ``handle`` is the Popen object when this process started the server: waiting on it also reaps
    the child, so no zombie is left in a long-lived test process.
    """
    if is_alive(record):
        _signal_group(record, signal.SIGTERM)
        if not _wait_until_dead(record, handle, grace):
            _signal_group(record, signal.SIGKILL)
            if not _wait_until_dead(record, handle, 10.0):
                raise ClusterStopError(
                    f"{record.name} (pid {record.pid}) survived SIGKILL; check `ps -p {record.pid}`"
                )
    if handle is not None:
        try:
            handle.wait(timeout=5.0)
        except subprocess.TimeoutExpired as exc:  # only possible if is_alive() was wrong
            raise ClusterStopError(f"{record.name} (pid {record.pid}) did not exit") from exc


def _signal_group(record: ProcessRecord, sig: signal.Signals) -> None:
    try:
        # The server is its session's leader, so its pid is its group id; if something moved it
        # to another group, signal just the process.
        if os.getpgid(record.pid) == record.pid:
            os.killpg(record.pid, sig)
        else:
            os.kill(record.pid, sig)
    except ProcessLookupError:
        pass


def _wait_until_dead(
    record: ProcessRecord, handle: subprocess.Popen[bytes] | None, timeout: float
) -> bool:
    if handle is not None:
        try:
            handle.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = time.monotonic() + timeout
    while is_alive(record):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def allocate_port() -> int:
    """A loopback port free right now (the caller retries if it is taken before it binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def is_listening(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0
