"""User-facing error types.

Every mistake a user can make in their input (a dataset row, a dose unit, a CLI flag) raises
:class:`InputError`. The CLI turns it into a one-line message and a non-zero exit code, never a
traceback. Programming errors inside the library stay ordinary exceptions.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input. The message names the field (and row, where there is one) and what is allowed."""

    def __init__(self, message: str, *, field: str | None = None, row: int | None = None):
        self.field = field
        self.row = row
        prefix = ""
        if row is not None:
            prefix += f"row {row}: "
        if field is not None and f"{field}" not in message:
            prefix += f"{field}: "
        super().__init__(prefix + message)


class InputErrors(InputError):
    """Several input errors found in one validation pass (all reported at once)."""

    def __init__(self, errors: list[InputError]):
        self.errors = list(errors)
        head = "; ".join(str(e) for e in self.errors[:5])
        more = f" (and {len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
        super().__init__(f"{len(self.errors)} invalid record(s): {head}{more}")


def raise_collected(errors: list[InputError]) -> None:
    """Raise the errors collected by a validation pass, if any."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise InputErrors(errors)
