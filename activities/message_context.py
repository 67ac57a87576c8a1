"""What templates may show of a checkout: a plain dict built from the validated model."""

from domain.checkout import AbandonedCheckout


def checkout_context(checkout: AbandonedCheckout, shop_name: str) -> dict[str, object]:
    currency = checkout.currency
    contact = checkout.contact_details
    return {
        "shop_name": shop_name,
        "checkout_id": checkout.id,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "buyer_name": " ".join(n for n in (contact.first_name, contact.last_name) if n) or None,
        "checkout_url": checkout.checkout_url,
        "currency": currency,
        "total": checkout.total_price.display(currency),
        "subtotal": checkout.subtotal_price.display(currency) if checkout.subtotal_price else None,
        "items_count": sum(item.quantity for item in checkout.line_items),
        "line_items": [
            {
                "name": item.name,
                "quantity": item.quantity,
                "price": item.price.display(currency),
                "image_url": item.image_url,
                "url": item.url,
            }
            for item in checkout.line_items
        ],
    }
