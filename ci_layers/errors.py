"""The one error hierarchy of ci-layers.

CiLayersError                 str() is one line a user can act on
├── SpecError                 one problem in a spec, with file:line:col and layer
├── SpecInvalid               every SpecError of one load, reported together (exit 2)
├── GraphError                a layer that cannot join the LayerGraph
│   ├── DuplicateLayer
│   ├── UnknownParent
│   └── CycleError            carries the whole cycle, a -> b -> a
├── UnknownLayer              a name asked for on the command line
├── GitError                  a git operation failed, with the revision it concerned
├── StoreError                the OCI store: a missing blob or image, a broken layout
│   └── DigestMismatch        bytes that are not what their digest says (want, got, size)
└── BuildError                a layer could not be built (what failed, which layer)

Terminated (a BaseException, as KeyboardInterrupt is): SIGTERM, unwinding every cleanup.
"""

from __future__ import annotations

from dataclasses import dataclass

from .pickling import slotted_reduce

__all__ = [
    "BuildError",
    "CiLayersError",
    "CycleError",
    "DigestMismatch",
    "DuplicateLayer",
    "GitError",
    "GraphError",
    "Location",
    "SpecError",
    "SpecInvalid",
    "StoreError",
    "Terminated",
    "UnknownLayer",
    "UnknownParent",
    "UsageError",
]


@dataclass(frozen=True, slots=True)
class Location:
    """Where a definition came from: 1-based line and column, as editors count."""

    __reduce__ = slotted_reduce

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if not self.line:
            return self.file
        return f"{self.file}:{self.line}:{self.col}"


class Terminated(BaseException):
    """SIGTERM (a cancelled CI job, `timeout`, systemd): raised where the program is, so
    that, as for Ctrl-C, containers are killed, mounts and scratch folders removed."""


class CiLayersError(Exception):
    """Base of every error ci-layers raises on purpose."""

    exit_code = 1


class SpecError(CiLayersError):
    """One problem in a spec file."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        where: Location,
        layer: str | None = None,
        severity: str = "error",
    ) -> None:
        self.message = message
        self.where = where
        self.layer = layer
        self.severity = severity  # "error", or "warning" for findings that do not stop a run
        super().__init__(str(self))

    def __str__(self) -> str:
        who = f"layer '{self.layer}': " if self.layer else ""
        return f"{self.where}: {self.severity}: {who}{self.message}"


class SpecInvalid(CiLayersError):
    """All the problems found in one load, so a user fixes them in one pass."""

    exit_code = 2

    def __init__(self, errors: list[SpecError], warnings: list[SpecError] | None = None) -> None:
        self.errors = errors
        self.problems = sorted(
            [*errors, *(warnings or [])], key=lambda e: (e.where.file, e.where.line, e.where.col)
        )
        super().__init__(str(self))

    @property
    def summary(self) -> str:
        n = len(self.errors)
        return f"{n} problem{'s' if n != 1 else ''} in the spec"

    def __str__(self) -> str:
        return "\n".join([*(str(e) for e in self.problems), self.summary])


class GraphError(CiLayersError):
    """A layer that cannot be added to the graph."""

    exit_code = 2


class DuplicateLayer(GraphError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"layer '{name}' is defined twice")


class UnknownParent(GraphError):
    def __init__(self, name: str, parent: str) -> None:
        self.name = name
        self.parent = parent
        super().__init__(f"layer '{name}' depends on unknown layer '{parent}'")


class CycleError(GraphError):
    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__("dependency cycle: " + " -> ".join(cycle))


class UnknownLayer(CiLayersError):
    """A layer name given on the command line that the spec does not define."""

    exit_code = 2

    def __init__(self, names: list[tuple[str, str | None]]) -> None:
        """`names`: (unknown name, closest known one or None)."""
        self.name = names[0][0]
        said = [f"'{n}'" + (f" (did you mean '{s}'?)" if s else "") for n, s in names]
        what = "no layer named " if len(names) == 1 else "no layers named "
        super().__init__(what + ", ".join(said) + " in the spec (ci-layers graph lists them)")


class UsageError(CiLayersError):
    """Bad command-line input that argparse cannot see (a missing or broken file)."""

    exit_code = 2


class GitError(CiLayersError):
    """A git operation failed; `rev` names what it was about."""

    def __init__(self, message: str, *, rev: str | None = None) -> None:
        self.rev = rev
        super().__init__(message)


class StoreError(CiLayersError):
    """The OCI store cannot do what was asked (a missing blob or image, a broken file)."""


class DigestMismatch(StoreError):
    """Bytes read or written that do not hash to the digest that names them."""

    def __init__(self, *, want: str, got: str, size: int, what: str = "blob") -> None:
        self.want, self.got, self.size = want, got, size
        super().__init__(f"{what} {want}: read {size} bytes that hash to {got}; refused")


class BuildError(CiLayersError):
    """A layer could not be built; `layer` names it when known."""

    def __init__(self, message: str, *, layer: str | None = None) -> None:
        self.layer = layer
        super().__init__(f"layer '{layer}': {message}" if layer else message)


class RegistryError(CiLayersError):
    """A registry refused, failed or could not be reached; the message names it and
    what was asked (never a credential). `status`: the HTTP status it answered, if one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RegistryUnreachable(RegistryError):
    """The registry did not answer at all (DNS, connection, TLS), after retries."""
