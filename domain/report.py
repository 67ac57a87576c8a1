"""The body of a report: the AbandonedCheckout shape without the engine's own fields.

Services written against the reference SDK send `_id`, `_createdDate` and `_updatedDate`; REST
clients send `createdDate` and `updatedDate`. Both are accepted. The engine assigns the id and
keeps the status and activities, so a report may not set those (an empty `id` from an SDK object
is let through).
"""

from typing import Any

from domain.checkout import AbandonedCheckout, parse_checkout
from domain.errors import InvalidInputError

SDK_SPELLINGS = {"_id": "id", "_createdDate": "createdDate", "_updatedDate": "updatedDate"}
ENGINE_OWNED = ("status", "activities", "checkoutRecoveredDate", "orderId", "recoveryAttribution")


def parse_report(body: object) -> AbandonedCheckout:
    """The reported checkout, or InvalidInputError naming every field at fault."""
    if isinstance(body, dict) and set(body) == {"abandonedCheckout"}:
        body = body["abandonedCheckout"]  # the wrapped form the GET answers with
    if not isinstance(body, dict):
        raise InvalidInputError("abandoned checkout", ["(root): must be a JSON object"])
    fields: dict[str, Any] = {}
    problems: list[str] = []
    for name, value in body.items():
        rest_name = SDK_SPELLINGS.get(str(name), str(name))
        if rest_name in fields:
            problems.append(f"{name}: given twice (as {rest_name} and {name})")
        fields[rest_name] = value
    if fields.pop("id", None) not in (None, ""):
        problems.append("id: assigned by the engine; identify the checkout by checkoutId or cartId")
    problems += [
        f"{name}: set by the engine, not by a report" for name in ENGINE_OWNED if name in fields
    ]
    if problems:
        raise InvalidInputError("abandoned checkout", problems)
    return parse_checkout(fields)
