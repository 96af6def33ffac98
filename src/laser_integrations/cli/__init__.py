"""The ``laser`` command line: one module per command group, one convention, one exit-code policy.

- ``encoding``: ``encode``, ``export``, ``explain``;
- ``evaluation``: ``eval``, ``eval-mteb``, ``demo``;
- ``training``: ``rationales``, ``train``;
- ``index``: ``index``;
- ``serve``: ``serve``.

Every command takes the model as ``-m/--model``. :func:`main` returns the exit status: 0 on success,
2 with one ``laser COMMAND: error: ...`` line on stderr for a user error (a bad model spec, a missing file, a
bad value), 130 on Ctrl-C. Anything else is a bug and keeps its traceback. ``LASER_DEBUG=1`` shows the
traceback of a user error too.

>>> main(["encode", "--model", "no-such-model", "some text"])
2
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from laser_integrations.cli import encoding, evaluation, index, serve, training
from laser_integrations.cli.options import UserError

COMMAND_GROUPS = (encoding, evaluation, training, serve, index)

USER_ERRORS: tuple[type[BaseException], ...] = (UserError, ValueError, TypeError, OSError, ImportError)
"""What a user's input can cause: bad values and types, missing files, unreachable or unknown models
(``ModelLoadError`` is an ``OSError``), a missing optional dependency (the message names the install)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="laser", description="LaSER latent-thinking embeddings")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``laser`` command and return its exit status (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    try:
        status = args.run(args)
    except KeyboardInterrupt:
        print("laser: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        if os.environ.get("LASER_DEBUG"):
            traceback.print_exc()
        print(f"laser {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2
    return int(status or 0)


def one_line(error: BaseException) -> str:
    """The error's message on one line (multi-line messages are joined; the exception type only if no message)."""
    message = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    if isinstance(error, KeyError):  # str(KeyError('x')) is "'x'"
        message = f"missing {message}"
    return message or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
