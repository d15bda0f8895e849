"""Process inspection for the tests, from /proc (no extra dependency)."""
from __future__ import annotations

import os


def parent_map() -> dict[int, int]:
    """pid -> ppid for every live process."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as file:
                    parents[int(entry)] = int(file.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return parents


def descendants(pid: int) -> list[int]:
    parents = parent_map()
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        children = [child for child, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


def alive(pid: int) -> bool:
    """True for a process that exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            return file.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def template_interpreter(template_pid: int) -> int:
    """The template interpreter's pid: the Executor's process itself, or the only child of
    the `unshare` wrapper when namespaces are used."""
    with open(f"/proc/{template_pid}/cmdline", "rb") as file:
        program = os.path.basename(file.read().split(b"\0")[0])
    if program != b"unshare":
        return template_pid
    parents = parent_map()
    [child] = [pid for pid, parent in parents.items() if parent == template_pid]
    return child


def sandbox_children(template_pid: int) -> list[int]:
    """Live processes below the template interpreter (its sandboxed children and theirs)."""
    return [pid for pid in descendants(template_interpreter(template_pid)) if alive(pid)]


def private_dirs_root(executor) -> str:
    """Where the executor's private directories are, as seen from the host."""
    from azr_jax.executor.rootfs import WORKSPACE
    if executor.private_root:
        return f"/proc/{template_interpreter(executor.template_pid)}/root{WORKSPACE}"
    return executor._template.base_dir
