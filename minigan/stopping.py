"""Stopping a run by a signal: Ctrl-C (SIGINT) and SIGTERM (``kill``, ``timeout``, every job
scheduler) are handled alike.

While a run trains, the first signal asks it to finish the current step, write the checkpoint
and end (:meth:`minigan.training.loop.Trainer._request_stop`); a second one stops it at once with
:class:`Interrupted`, whose message says what was and was not saved. The command's exit status
is 128 + the signal's number, as a shell reports a process ended by that signal: 130 for
Ctrl-C, 143 for SIGTERM.
"""
from __future__ import annotations

import signal
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A run stopped at once by a signal; ``str()`` says what was saved."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signal.Signals(signum)

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)


def exit_code(signum) -> int:
    """The exit status of a command a signal ended: 128 + its number."""
    return 128 + int(signum)


def signal_name(signum) -> str:
    return signal.Signals(signum).name


def raise_interrupted(signum, frame):
    """Outside a training loop, SIGTERM ends the command as Ctrl-C does (KeyboardInterrupt)."""
    raise Interrupted(f"stopped by {signal_name(signum)}", signum)


@contextmanager
def handling(handler, signals=STOP_SIGNALS):
    """``handler`` installed for ``signals`` inside the block, the previous handlers restored
    after it. Outside the main thread signals cannot be caught: Python's defaults stay."""
    previous = {}
    try:
        for signum in signals:
            previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not in the main thread
        pass
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
