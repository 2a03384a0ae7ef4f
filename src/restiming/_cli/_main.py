"""``restiming``: the command line.

``restiming URL [URL ...]`` fetches and prints a waterfall per URL;
``restiming bench URL ...`` is the load generator; ``restiming compare BASE NEW``
compares two bench summaries; ``restiming demo`` benches a built-in local server.
``main(argv=None, stdout=None, stderr=None) -> int`` never calls ``sys.exit``, so tests
run it in-process with injected streams. Results go to stdout, errors, warnings and
progress to stderr. Exit codes are in ``_common``: 2 is for usage errors only; an
unexpected exception prints its traceback and exits 70; a closed stdout pipe
(``restiming ... | head``) ends quietly with 141 (as a shell tool killed by SIGPIPE).
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import TextIO

from ._common import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, Help, UsageError

__all__ = ["main"]

EXIT_BROKEN_PIPE = 141


def _dispatch(argv: list[str], out: TextIO, err: TextIO) -> int:
    command = argv[0] if argv else ""
    if command == "bench":
        from ._bench import run_bench_cli

        return run_bench_cli(argv[1:], out, err)
    if command == "compare":
        from ._compare import run_compare_cli

        return run_compare_cli(argv[1:], out, err)
    if command == "demo":
        from ._demo import run_demo_cli

        return run_demo_cli(argv[1:], out, err)
    from ._fetch import run_fetch_cli

    return run_fetch_cli(argv, out, err)


def main(argv: list[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the CLI; returns the exit code."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else (stdout if stdout is not None else sys.stderr)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv, out, err)
    except Help as h:
        return h.status
    except UsageError as exc:
        err.write(f"{exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        if out is sys.stdout:
            # Python flushes stdout again at exit and would print a second error.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception:
        err.write("restiming: internal error (please report it with this traceback)\n")
        err.write(traceback.format_exc())
        return EXIT_INTERNAL
