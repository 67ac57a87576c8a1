"""Our search attributes: registering them on the dev server, and checking a namespace has them."""

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.service import RPCError, RPCStatusCode

from domain.flow import SEARCH_ATTRIBUTES

logger = logging.getLogger(__name__)

_ASK_TIMEOUT = timedelta(seconds=5)
_RECHECK_SECONDS = 30.0
"""A part starting while Temporal is down must not hang here."""

_CLI_TYPE = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
}


def dev_server_flags() -> list[str]:
    """`temporal server start-dev` arguments that register the attributes at start."""
    flags: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        flags += ["--search-attribute", f"{key.name}={_CLI_TYPE[key.indexed_value_type]}"]
    return flags


async def search_attributes_registered(client: Client) -> bool:
    """Whether the namespace has all our attributes with the right types. False (and a warning)
    when it has not, when the connection may not ask (Temporal Cloud keys without admin
    rights), or when Temporal cannot be reached: flows then run without publishing."""
    answer = await registered_or_unreachable(client)
    return bool(answer)


async def recheck_until_answered(client: Client, apply: Callable[[bool], None]) -> None:
    """For a part that started while Temporal was down: ask again every half minute until
    Temporal answers, then `apply` the answer (flows reported meanwhile do not publish)."""
    while True:
        await asyncio.sleep(_RECHECK_SECONDS)
        answer = await registered_or_unreachable(client, quiet=True)
        if answer is not None:
            apply(answer)
            return


async def registered_or_unreachable(client: Client, *, quiet: bool = False) -> bool | None:
    """None when Temporal cannot be reached at all."""
    try:
        answer = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace), timeout=_ASK_TIMEOUT
        )
    except RPCError as err:
        unreachable = err.status is RPCStatusCode.UNAVAILABLE
        if not quiet:
            logger.warning("Cannot list search attributes (%s); flows will not publish them", err)
        return None if unreachable else False
    except RuntimeError as err:  # a lazy client's first connection failed
        if not quiet:
            logger.warning(
                "Temporal unreachable (%s); flows will not publish search attributes "
                "until it answers",
                err,
            )
        return None
    registered = dict(answer.custom_attributes)
    missing = [
        key.name
        for key in SEARCH_ATTRIBUTES
        if registered.get(key.name)
        != IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{_CLI_TYPE[key.indexed_value_type].upper()}")
    ]
    if missing:
        logger.warning(
            "Search attributes %s are not registered in namespace %s; flows will not publish "
            "them (temporal operator search-attribute create --name NAME --type TYPE)",
            ", ".join(missing),
            client.namespace,
        )
        return False
    return True
