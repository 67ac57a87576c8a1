"""The body of a report: the AbandonedCheckout shape without the engine's own fields.

Every entry point that reports a checkout (the HTTP API, `checkout-recovery start` and `import`)
reads it with parse_report, so they accept exactly the same fields. The engine derives the id
from checkoutId (or cartId) and keeps the status, activities and recovery itself: a report may
not set those, so the same shop checkout always maps to the same abandoned checkout and flow (an
empty `id` from an SDK object is let through).

Services written against the reference SDK send `_id`, `_createdDate` and `_updatedDate`; REST
clients send `createdDate` and `updatedDate`. Both are accepted, and so are the model's
snake_case names (`checkout_id`); each field counts once, however it is spelled.

`checkout-recovery update` reads a newer snapshot with parse_update: a report's fields, plus an
optional `id` naming the checkout as the engine shows it.
"""

import json
from typing import Any, NoReturn

from pydantic.alias_generators import to_snake

from domain.checkout import AbandonedCheckout, parse_checkout
from domain.errors import InvalidInputError

SDK_SPELLINGS = {"_id": "id", "_createdDate": "createdDate", "_updatedDate": "updatedDate"}
ENGINE_OWNED = (
    "status",
    "activities",
    "checkoutRecoveredDate",
    "orderId",
    "recoveryAttribution",
    "stopReason",
    "flowState",
)
"""Fields the engine sets (besides `id`); no report or update may carry them."""

_SPELLINGS: dict[str, str] = {
    **{name: info.alias or name for name, info in AbandonedCheckout.model_fields.items()},
    **{to_snake(name): name for name in ENGINE_OWNED},
    **SDK_SPELLINGS,
}
"""Every accepted spelling of a top-level field, to its camelCase name."""


class NotJsonError(ValueError):
    """Bytes that are not one JSON document; the message says why in one line, never echoing
    the input."""


def load_json(raw: bytes) -> Any:
    """The JSON document in `raw` (UTF-8, a leading byte order mark allowed).

    Nesting deeper than Python's recursion limit is refused through the RecursionError the
    json module raises, as api.request_body does for HTTP bodies: no second depth bound.
    """
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        raise NotJsonError(f"not UTF-8 text (byte {err.start}: {err.reason})") from None
    try:
        return json.loads(text, parse_constant=_not_json)
    except NotJsonError:
        raise
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno}" if err.lineno > 1 else f"column {err.colno}"
        raise NotJsonError(f"not JSON: {err.msg} at {where}") from None
    except RecursionError:
        raise NotJsonError("not JSON this engine reads: nested too deeply") from None
    except ValueError as err:  # an integer of more digits than Python converts
        reason = str(err).split(";")[0]  # the rest is advice for Python programmers
        raise NotJsonError(f"not JSON this engine reads: {reason}") from None


def _not_json(constant: str) -> NoReturn:
    # Python's json reads NaN, Infinity and -Infinity; JSON has no such values.
    raise NotJsonError(f"not JSON: {constant} is not a JSON value")


def parse_report(body: object) -> AbandonedCheckout:
    """The reported checkout, or InvalidInputError naming every field at fault."""
    body_fields = _BodyFields(body)
    if body_fields.values.pop("id", None) not in (None, ""):
        body_fields.problems.append(
            f"{body_fields.spelled('id')}: assigned by the engine; identify the checkout by "
            "checkoutId or cartId"
        )
    return body_fields.checkout("a report")


def parse_update(body: object) -> AbandonedCheckout:
    """A newer snapshot of a reported checkout, or InvalidInputError naming every field at fault.

    The fields of a report; the checkout it updates is the one its checkoutId (or cartId) was
    reported with, or the one named by an optional `id` (the engine's id, as `show` prints it).
    """
    body_fields = _BodyFields(body)
    if body_fields.values.get("id") == "":
        del body_fields.values["id"]
    return body_fields.checkout("an update")


class _BodyFields:
    """A body's fields under their camelCase names, how each was spelled, and what is wrong."""

    def __init__(self, body: object) -> None:
        if isinstance(body, dict) and set(body) == {"abandonedCheckout"}:
            body = body["abandonedCheckout"]  # the wrapped form the GET and `show` answer with
        if not isinstance(body, dict):
            raise InvalidInputError("abandoned checkout", ["(root): must be a JSON object"])
        self.values: dict[str, Any] = {}
        self.spellings: dict[str, str] = {}
        self.problems: list[str] = []
        for key, value in body.items():
            given = str(key)
            name = _SPELLINGS.get(given, given)
            if name in self.values:
                self.problems.append(f"{given}: given twice (as {self.spelled(name)} and {given})")
            self.values[name] = value
            self.spellings[name] = given

    def spelled(self, name: str) -> str:
        return self.spellings.get(name, name)

    def checkout(self, what: str) -> AbandonedCheckout:
        self.problems += [
            f"{self.spelled(name)}: set by the engine, not by {what}"
            for name in ENGINE_OWNED
            if name in self.values
        ]
        if self.problems:
            raise InvalidInputError("abandoned checkout", self.problems)
        return parse_checkout(self.values)
