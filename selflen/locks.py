"""Exclusive ownership of a run directory: ``RunLock``, a lease that a crashed or killed holder cannot keep
(``run.lock`` with the holder's pid, host and heartbeat, plus a kernel lock that dies with the process)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from selflen.store import LOCK_NAME, StoreError

log = logging.getLogger(__name__)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lease_seconds() -> float:
    """Lease length of a run lock (``SELFLEN_LOCK_LEASE_S``, default 120 s)."""
    try:
        return max(1.0, float(os.environ.get("SELFLEN_LOCK_LEASE_S", "120")))
    except ValueError:
        return 120.0


class RunLock:
    """Exclusive ownership of a run directory that cannot outlive its holder.

    Two layers: a kernel lock (``flock`` on ``run.lock.kernel``, dropped by the kernel when the holder dies) and
    a lease file ``run.lock`` (pid, host, last renewal) that a daemon thread renews every ``lease_s / 4`` seconds.
    The kernel lock settles it on one host; the lease settles it across hosts of a shared filesystem, where a
    holder that died on another node (SIGKILL, node failure, SLURM requeue) is taken over once its lease has
    expired. A live holder (kernel lock held, or a fresh lease of another host) is never overridden.
    """

    def __init__(self, run_dir: Path, lease_s: float | None = None, renew_s: float | None = None) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.kernel_path = Path(run_dir) / (LOCK_NAME + ".kernel")
        self.lease_s = float(lease_s) if lease_s is not None else lease_seconds()
        self.renew_s = float(renew_s) if renew_s is not None else max(0.05, self.lease_s / 4)
        self.held = False
        self._fd: int | None = None
        self._token = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _me(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "host": socket.gethostname(), "since": _dt.datetime.now().isoformat(),
                "renewed": time.time(), "lease_s": self.lease_s, "token": self._token}

    def _refuse(self, holder: dict[str, Any], why: str) -> StoreError:
        return StoreError(
            f"run directory {self.path.parent} is in use by pid {holder.get('pid')} on {holder.get('host')} "
            f"since {holder.get('since')} ({why}); wait for it, or choose another hydra.run.dir"
        )

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.kernel_path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as err:
            raise StoreError(f"cannot write to the run directory {self.path.parent}: {err.strerror}; "
                             "check its permissions and free space, or choose another hydra.run.dir") from None
        kernel = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            kernel = False
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise self._refuse(self._holder(), "it holds the kernel lock") from None
            # a filesystem without flock (some NFS mounts: ENOLCK): the lease alone decides
            log.warning("no kernel lock on %s (%s); relying on the lease", self.kernel_path, err.strerror)
        self._fd = fd
        try:
            holder = self._holder()
            if holder:
                same_host = holder.get("host") == socket.gethostname()
                if same_host and _pid_alive(int(holder.get("pid", -1))) and int(holder.get("pid", -1)) != os.getpid():
                    # alive and not holding the kernel lock we got: a holder of the older lock format, or a
                    # filesystem without flock where the lease decides; otherwise the pid was reused by another
                    age = time.time() - float(holder.get("renewed", 0))
                    if "renewed" not in holder or (not kernel and age <= float(holder.get("lease_s", self.lease_s))):
                        raise self._refuse(holder, "its process is alive")
                if not same_host:
                    age = time.time() - float(holder.get("renewed", 0))
                    lease = float(holder.get("lease_s", self.lease_s))
                    if age <= lease:
                        raise self._refuse(holder, f"its lease was renewed {age:.0f} s ago and lasts {lease:.0f} s")
                log.warning("taking over the lock of pid %s on %s (dead, or its lease expired)",
                            holder.get("pid"), holder.get("host"))
            self._token = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
            self._write_lease()
            time.sleep(min(0.05, self.renew_s))
            if self._holder().get("token") != self._token:  # another host took it at the same moment
                raise self._refuse(self._holder(), "it took the lock at the same moment")
        except BaseException:
            self._unlock_kernel()
            raise
        self.held = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew, name="selflen-lock-lease", daemon=True)
        self._thread.start()

    def _write_lease(self) -> None:
        tmp = self.path.with_name(f"{LOCK_NAME}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._me()))
        os.replace(tmp, self.path)

    def _renew(self) -> None:
        while not self._stop.wait(self.renew_s):
            try:
                holder = self._holder()
                if holder and holder.get("token") != self._token:
                    log.error("the lock %s was taken over by pid %s on %s", self.path, holder.get("pid"),
                              holder.get("host"))
                    return
                self._write_lease()
            except OSError as err:  # a transient filesystem error; the next renewal tries again
                log.warning("could not renew the lease %s: %s", self.path, err)

    def _holder(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text() or "{}")
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _unlock_kernel(self) -> None:
        if self._fd is not None:
            try:
                with contextlib.suppress(OSError):  # closing the descriptor drops it anyway
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def release(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
        if self.held:
            if self._holder().get("token") == self._token:
                self.path.unlink(missing_ok=True)
            self.held = False
        self._unlock_kernel()

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
