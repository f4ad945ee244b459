"""``python app.py <command>`` run in the test's own process, answering as the process would."""
from __future__ import annotations

import contextlib
import sys
import traceback
from subprocess import CompletedProcess
from typing import Any, Iterator

import click.testing

from imgz import cli, workers


def run_command(*argv: str, env: dict[str, str | None] | None = None) -> CompletedProcess:
    """``python app.py <argv>`` in this process: exit status, stdout and stderr as a process's.

    ``env`` changes the environment meanwhile (None unsets). Media workers a command starts
    (``check --repair`` renders) are stopped when it ends.
    """
    runner = click.testing.CliRunner()
    with _pools_closed(), runner.isolation(env=env) as (out, err, _):
        try:
            code: Any = cli.run(list(argv))
        except SystemExit as exc:
            code = exc.code
            if code is not None and not isinstance(code, int):
                print(code, file=sys.stderr)
                code = 1
        except Exception:
            traceback.print_exc(file=sys.stderr)
            code = 1
        stdout, stderr = out.getvalue(), err.getvalue()
    return CompletedProcess(["app.py", *argv], code or 0, stdout.decode(), stderr.decode())


@contextlib.contextmanager
def _pools_closed() -> Iterator[None]:
    """Note the media-worker pools made meanwhile and close them at the end."""
    made: list[workers.Pool] = []
    original = workers.Pool

    class Noted(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    workers.Pool = Noted  # type: ignore[misc]
    try:
        yield
    finally:
        workers.Pool = original  # type: ignore[misc]
        for pool in made:
            pool.close()
