"""The task-type table: every type a run can train, by name, in the reference's group order.

`azr.task_types` names entries of this table; an unknown name is a config error. A new type is
a `TaskType` subclass in its own module, added below (or passed to `register` before the run is
configured). The order here is the order of the six (task type x role) groups in an update.
"""
from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable

from azr_jax.errors import ConfigError
from azr_jax.selfplay.task_types.base import ProposalCheck, TaskType
from azr_jax.selfplay.task_types.induction import INDUCTION
from azr_jax.selfplay.task_types.io_tasks import ABDUCTION, DEDUCTION

__all__ = ["ABDUCTION", "DEDUCTION", "INDUCTION", "TASK_TYPES", "ProposalCheck", "Role", "TaskType",
           "get", "group_name", "groups", "register"]

TASK_TYPES: dict[str, TaskType] = {}


def register(task_type: TaskType) -> TaskType:
    """Add a type to the table; its name, reference name and buffer key must be new."""
    if not isinstance(task_type, TaskType):
        raise TypeError(f"register takes a TaskType instance, got {type(task_type).__name__}")
    for attr in ("name", "code_name", "buffer_key"):
        taken = [t.name for t in TASK_TYPES.values() if getattr(t, attr) == getattr(task_type, attr)]
        if taken:
            raise ConfigError(f"task type {task_type.name!r}: its {attr} {getattr(task_type, attr)!r} is "
                              f"already used by {taken[0]!r}")
    TASK_TYPES[task_type.name] = task_type
    return task_type


for _task in (ABDUCTION, DEDUCTION, INDUCTION):
    register(_task)


def get(name: str) -> TaskType:
    """The registered type called `name`; ConfigError (with the closest names) otherwise."""
    if name not in TASK_TYPES:
        close = difflib.get_close_matches(str(name), TASK_TYPES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown task type {name!r}{hint} (known: {', '.join(TASK_TYPES)})")
    return TASK_TYPES[name]


class Role(str, enum.Enum):
    """The two parts the one policy plays."""

    PROPOSE = "propose"
    SOLVE = "solve"

    @property
    def prefix(self) -> str:
        """The reference's sub-batch prefix: gen (propose) or pred (solve)."""
        return "gen" if self is Role.PROPOSE else "pred"


def group_name(task: TaskType, role: Role) -> str:
    """Name of a (task type x role) group as in the reference logs, e.g. ``gen_code_i``."""
    return f"{role.prefix}_{task.code_name}"


def groups(task_types: Iterable[TaskType]) -> list[tuple[TaskType, Role]]:
    """The (task type x role) groups of these types in update order: table order, propose first
    (the reference concatenates abduction, deduction, induction; docs/reference.md §8.2)."""
    chosen = set(task_types)
    return [(t, role) for t in TASK_TYPES.values() if t in chosen for role in (Role.PROPOSE, Role.SOLVE)]
