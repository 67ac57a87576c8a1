"""What stays of a checkout once its buyer's personal data is erased."""

import json

ERASED = "(erased)"
_KEPT_FIELDS = (
    "checkoutId",
    "cartId",
    "currency",
    "conversionCurrency",
    "subtotalPrice",
    "totalPrice",
    "buyerLanguage",
)


def anonymised_snapshot(snapshot: str) -> str:
    """The stored snapshot with only what statistics need: ids of the cart, money and language.

    Contact details, the buyer's identities, the checkout URL (it may carry a personal token) and
    the line items (their URLs and names can identify a buyer) go.
    """
    stored = json.loads(snapshot)
    kept = {name: stored[name] for name in _KEPT_FIELDS if name in stored}
    items = stored.get("lineItems", [])
    kept["lineItemsCount"] = sum(int(item.get("quantity", 0)) for item in items)
    return json.dumps(kept, separators=(",", ":"))
