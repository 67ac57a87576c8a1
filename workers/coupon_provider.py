"""Which coupon provider the worker uses: the store's own, or one the shop plugs in."""

import importlib
from collections.abc import Callable
from typing import cast

from domain.coupons import CouponProvider
from store.coupons import StoreCouponProvider
from store.sql import SqlStore
from workers.settings import Settings


def coupon_provider_for(settings: Settings, store: SqlStore) -> CouponProvider:
    """CHECKOUT_RECOVERY_COUPON_PROVIDER="package.module:factory" names a callable that takes the
    store and returns a provider (see domain.coupons.CouponProvider); unset, codes are made and
    kept by the store."""
    if not settings.coupon_provider:
        return StoreCouponProvider(store.engine)
    module_name, _, attribute = settings.coupon_provider.partition(":")
    if not module_name or not attribute:
        raise ValueError(
            f"coupon_provider {settings.coupon_provider!r} must look like 'package.module:factory'"
        )
    factory = getattr(importlib.import_module(module_name), attribute)
    return cast(Callable[[SqlStore], CouponProvider], factory)(store)
