"""Readable validation messages that name the field and the problem."""

from collections.abc import Callable, Sequence

from pydantic import ValidationError


class InvalidInputError(ValueError):
    """Input that cannot be accepted; the message lists every field at fault."""

    def __init__(self, what: str, problems: Sequence[str]) -> None:
        self.what = what
        self.problems = list(problems)
        listed = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {what}:\n{listed}")


def _default_location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(f".{item}" if parts else item)
    return "".join(parts) or "(root)"


def describe_validation_error(
    err: ValidationError,
    locate: Callable[[tuple[int | str, ...]], str] = _default_location,
) -> list[str]:
    """One line per problem: where it is, then what is wrong, without echoing secrets."""
    lines = []
    for problem in err.errors(include_url=False, include_input=False):
        # Pydantic puts the union member's tag into the location; it says nothing to a user.
        loc = tuple(
            p for p in problem["loc"] if not (isinstance(p, str) and p.startswith("function-"))
        )
        message = problem["msg"]
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        lines.append(f"{locate(loc)}: {message}")
    return lines
