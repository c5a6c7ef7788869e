"""Stop signals that unwind: temporary files and child processes are cleaned up on the way out."""

import contextlib
import signal
import threading

__all__ = ["signals_unwind"]


@contextlib.contextmanager
def signals_unwind():
    """Let SIGTERM and SIGHUP (what batch systems send) unwind as Ctrl-C does.

    Within the block, in the main thread and where no handler of the
    program's own is set, these signals raise `SystemExit` (status 128 plus
    the signal number), so that ``finally`` clauses run: SWarp is killed and
    reaped, working directories and half-written files are removed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def unwind(signum, frame):
        raise SystemExit(128 + signum)

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) in (signal.SIG_DFL, None):
            previous[number] = signal.signal(number, unwind)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
