"""Running commands: argument lists (never a shell), always a timeout, readable failures."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence


class CommandError(AssertionError):
    """A command that had to succeed did not; the message carries its full output.

    An AssertionError, so that a failing command inside a test reads as the test's failure.
    """

    def __init__(self, argv: Sequence[str], returncode: int | None, stdout: str, stderr: str):
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        status = "timed out" if returncode is None else f"exited {returncode}"
        super().__init__(
            f"command {status}: {' '.join(self.argv)}\n"
            f"--- stdout ---\n{stdout.rstrip()}\n--- stderr ---\n{stderr.rstrip()}"
        )


class WaitTimeout(AssertionError):
    """:func:`wait_until` gave up."""


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 60.0,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command with a timeout.

    A timeout is always an error (raised as :class:`CommandError`) even with
    ``check=False``: a hung docker or ovs-vsctl call must never hang a suite.
    """
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandError(argv, None, text_of(exc.stdout), text_of(exc.stderr)) from exc
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stdout, proc.stderr)
    return proc


def text_of(data: str | bytes | None) -> str:
    """Captured output as text, whatever form subprocess left it in."""
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, interval: float = 0.2, what: str = ""
) -> None:
    """Poll ``predicate`` until it is true; raise :class:`WaitTimeout` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what or predicate}")
        time.sleep(interval)
