"""What every ``python -m or_synth.<name>`` entry point shares: the config tree, config loading, and the
user-error contract.

The contract: a user error (:class:`~or_synth.data.UserError`, a bad value, a missing or unwritable file, a bad
Hydra override) prints one ``error: ...`` line naming the file, scan, field or option, and exits 2, without a
traceback; a job stopped on request (:class:`~or_synth.data.StoppedOnRequest`, Ctrl-C) says how to resume and
exits 130. ``--debug`` (or ``OR_SYNTH_DEBUG=1``) shows the full traceback instead.

An entry point is a plain library function wrapped by :func:`command`::

    @command("sample")
    def main(cfg: DictConfig) -> None:
        run_plan(prepare(cfg))
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from omegaconf import DictConfig

from or_synth.data.errors import StoppedOnRequest, UserError

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")
DEBUG_ENV = "OR_SYNTH_DEBUG"
# Errors that mean "what was asked for cannot be done as asked": the message is the answer, not a traceback.
# ValueError covers bad option values; the OSErrors a missing, misplaced or read-only path raises.
USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError,
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)
# Hydra's own command-line flags: with any of them Hydra answers itself (help, config printing, multirun).
_HYDRA_FLAGS = ("-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info", "-m", "--multirun",
                "-sc", "--shell-completion", "-cp", "--config-path", "-cn", "--config-name", "-cd",
                "--config-dir", "-p", "--package", "--resolve", "--run", "-r", "--experimental-rerun")  # fmt: skip


def load_config(name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Config ``name`` of ``configs/`` with command-line style overrides, e.g. ``["pipeline=/tmp/p", "steps=2"]``."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def one_line(error: BaseException) -> str:
    """The error's message on one line (a path or a list in it may have wrapped). A :class:`UserError` whose
    message is laid out in lines on purpose (download instructions, say) keeps them."""
    if isinstance(error, UserError) and "\n" in str(error).strip():
        return "\n".join(line.rstrip() for line in str(error).strip().splitlines())
    text = " ".join(str(error).split())
    return text or type(error).__name__


def fail(message: str, code: int = 2) -> NoReturn:
    """End the command with ``error: message`` on stderr."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn user errors into one line and exit 2, and a stop on request into its message and exit 130."""
    try:
        yield
    except StoppedOnRequest as stopped:
        if debugging():
            raise
        print(one_line(stopped), file=sys.stderr, flush=True)
        sys.exit(StoppedOnRequest.exit_code)
    except KeyboardInterrupt:
        if debugging():
            raise
        print("interrupted", file=sys.stderr, flush=True)
        sys.exit(StoppedOnRequest.exit_code)
    except USER_ERRORS as error:
        if debugging():
            raise
        fail(one_line(error), getattr(error, "exit_code", 2))


def check_overrides(config_name: str, overrides: Sequence[str], config_dir: str = CONFIG_DIR) -> None:
    """Compose the config once before Hydra runs, so a bad override (an unknown key or group option, a syntax
    error) is one ``error:`` line and exit 2 instead of Hydra's exit 1."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as error:
        if debugging():
            raise
        cause = error.__cause__
        detail = f" ({one_line(cause)})" if isinstance(cause, OmegaConfBaseException) else ""
        message = one_line(error).split(" Config search path:")[
            0
        ]  # Hydra's search path says nothing to a user
        fail(f"{message}{detail}")


def command(
    config_name: str,
    *,
    config_dir: str | Path = CONFIG_DIR,
    argv: Callable[[list[str]], list[str]] | None = None,
) -> Callable[[Callable[[DictConfig], Any]], Callable[[], None]]:
    """Decorate ``task(cfg)`` into a zero-argument ``main()``: Hydra composes ``<config_dir>/<config_name>.yaml``
    with the command line, and :func:`user_errors` keeps the contract.

    Args:
        config_dir: the config tree (default ``configs/``; the renderer has its own, ``configs/render``).
        argv: rewrites ``sys.argv`` before Hydra parses it (e.g. positional arguments into overrides).
    """
    import hydra

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], None]:
        @hydra.main(version_base="1.3", config_path=str(config_dir), config_name=config_name)
        def hydra_task(cfg: DictConfig) -> None:
            with user_errors():
                task(cfg)

        @functools.wraps(task)
        def main() -> None:
            if "--debug" in sys.argv[1:]:
                sys.argv = [a for a in sys.argv if a != "--debug"]
                os.environ[DEBUG_ENV] = "1"
            if argv is not None:
                sys.argv = argv(sys.argv)
            args = sys.argv[1:]
            if not any(a.split("=")[0] in _HYDRA_FLAGS for a in args):
                check_overrides(config_name, args, str(config_dir))
            hydra_task()

        return main

    return decorate
