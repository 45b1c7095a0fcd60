"""The errors a user can act on. The command lines print them as one line (``selflen: error: ...``, exit 1)
instead of a traceback; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

__all__ = ["EngineFailed", "EngineUnavailable", "Interrupted", "SelflenError", "StoreError", "check_stop",
           "install_stop_handlers", "stop_requested", "stop_signal"]


class SelflenError(RuntimeError):
    """Base of every error whose message says what went wrong and what to do; printed as one line."""


class EngineUnavailable(SelflenError):
    """The generation server did not answer any request of a try, even after the bounded retries."""


class StoreError(SelflenError):
    """The run directory cannot be used as asked; the message says why and what to do."""


class EngineFailed(SelflenError):
    """Requests of a stage failed in the engine (transport, malformed answers, timeouts): the stage is not done."""


class Interrupted(SelflenError):
    """SIGTERM or SIGINT arrived; raised at the next record boundary so nothing is half-written."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


_stop = threading.Event()
_signum: list[int] = []


def stop_requested() -> bool:
    return _stop.is_set()


def request_stop(signum: int) -> None:
    _signum[:] = [signum]
    _stop.set()


def stop_signal() -> int | None:
    """The signal of the stop asked for (SIGTERM or SIGINT), None when no stop was asked for."""
    return _signum[0] if _stop.is_set() and _signum else None


def clear_stop() -> None:
    _signum.clear()
    _stop.clear()


def check_stop() -> None:
    """Raise ``Interrupted`` if a stop was asked for (call it between records, engine calls, training steps)."""
    if _stop.is_set():
        raise Interrupted(_signum[0] if _signum else signal.SIGTERM)


def install_stop_handlers() -> Callable[[], None]:
    """SIGTERM/SIGINT ask for a clean stop at the next record boundary; a second signal stops at once.

    Returns a function that puts the previous handlers back (for callers inside a longer-lived process)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # only the main thread may set handlers; a worker thread keeps the defaults

    def handler(signum: int, _frame: object) -> None:
        if _stop.is_set():  # second signal: do not wait for the boundary
            raise Interrupted(signum)
        request_stop(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)
        clear_stop()

    return restore
