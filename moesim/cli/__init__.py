"""``moesim`` command line: a thin typer + rich layer over the Python API.

Every command forwards to a library function; bad input becomes a readable message and exit
code 2, never a traceback. Importing this package (``moesim --help``, ``--version``) loads no
Numba: each command imports the library inside its body. Nor does it load typer or rich: the
app (:mod:`moesim.cli.commands`) is imported by :func:`main` inside its Ctrl-C guard, so an
interrupt during start-up exits 130 without a traceback.

- :mod:`moesim.cli.common`: consoles, exit codes, ``--set``, scenario loading, Ctrl-C.
- :mod:`moesim.cli.commands`: the app, every command registered on it.
- :mod:`moesim.cli.run`: ``run``, ``validate``, ``schema``, ``init``.
- :mod:`moesim.cli.sweep`, :mod:`moesim.cli.figures`, :mod:`moesim.cli.bench`: the rest.
"""

from __future__ import annotations

import os
import signal
import sys

#: ``moesim.cli.common.EXIT_INTERRUPTED``, here too: an interrupt may come before it is imported.
_EXIT_INTERRUPTED = 130
#: ``moesim.cli.common.EXIT_TERMINATED``: SIGTERM, handled like Ctrl-C.
_EXIT_TERMINATED = 143


def _terminate(signum, frame):
    # SIGTERM before a command handles it itself (start-up, loading the scenario): nothing is
    # written yet, so stop now. SystemExit, not KeyboardInterrupt: typer would turn the latter
    # into exit 130, the code of Ctrl-C.
    sys.stderr.write("terminated\n")
    raise SystemExit(_EXIT_TERMINATED)


def _exit_stopped(code: int) -> None:
    """Leave with ``code`` (130 or 143) now that the interrupted command has cleaned up.

    Not ``sys.exit``: CPython marks a KeyboardInterrupt that passed through ``exec`` of a source
    string (a dataclass or namedtuple being built when Ctrl-C came, say) as unhandled even after
    it was caught, and would then end the process by SIGINT instead of the documented status.
    Every file is closed and every worker pool shut down by now; only the streams need flushing.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or a broken pipe: nothing more to say
            pass
    os._exit(code)


def main() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        from moesim.cli.commands import app

        app()
    except KeyboardInterrupt:
        # Plain write: rich itself may be what was loading when Ctrl-C came.
        sys.stderr.write("interrupted\n")
        _exit_stopped(_EXIT_INTERRUPTED)
    except SystemExit as stop:
        if stop.code in (_EXIT_INTERRUPTED, _EXIT_TERMINATED):
            _exit_stopped(stop.code)
        raise


def __getattr__(name: str):
    # ``from moesim.cli import app`` (tests, notebooks) still works, loaded on first use.
    if name == "app":
        from moesim.cli.commands import app

        return app
    if name == "summary_table":
        from moesim.cli.run import summary_table

        return summary_table
    raise AttributeError(f"module 'moesim.cli' has no attribute {name!r}")


__all__ = ["app", "main", "summary_table"]
