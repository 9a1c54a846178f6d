"""Task commands: the one rule for what the runner can run.

A task command is split with `shlex` into the program and its arguments (no shell runs it);
the API checks commands with the same function when a task is created, patched or collected,
so that a command that cannot run is refused then, not when a job reaches it.
"""

from __future__ import annotations

import shlex

# fractal-server refuses these characters in task commands (they would mean something to a
# shell); `cache_dir`, which goes into commands, is held to them too.
FORBIDDEN_COMMAND_CHARACTERS = frozenset("`#$&*()\\|[]{};<>?!")


def split_command(command: str) -> list[str]:
    """The program and arguments of `command`; a ValueError says why it cannot run."""
    forbidden = sorted(FORBIDDEN_COMMAND_CHARACTERS.intersection(command))
    if forbidden:
        raise ValueError(f"commands must not contain {' '.join(forbidden)}")
    if "\0" in command:
        raise ValueError("commands must not contain a NUL character")
    try:
        argv = shlex.split(command)
    except ValueError as error:
        # shlex's only complaint without `\`: "No closing quotation".
        raise ValueError(
            f"command {command!r} cannot be split into arguments: {error} (a quote is not closed)"
        ) from None
    if not argv:
        raise ValueError("the command is empty")
    if not argv[0]:
        raise ValueError(f"command {command!r} names no program (its first word is empty)")
    return argv
