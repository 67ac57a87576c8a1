"""The shops registry over HTTP, for the platform that runs the deployment: list, add, read and
change shops and their own settings (domain.shops.ShopSettings).

Only a platform key (one that belongs to no shop) is admitted: a shop's key gets 403 here, since
the registry is every shop's, and a shop's settings say where its buyers' emails come from. The
settings a shop does not set are the deployment's; the answers show the shop's own. A policy is
checked as a policy file's content (keys, values, step order); its templates are rendered by
`checkout-recovery shops set --policy` and `policy check --shop`, which have the templates.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, Field, ValidationError

from api.auth import Authenticator, Credentials
from api.errors import ERROR_RESPONSES, ApiError, ErrorBody, FieldProblem, invalid_input
from api.request_body import checked_path_ids
from domain.access import ApiKey, Scope
from domain.base import CamelModel
from domain.dkim import DkimError, DkimSetting, read_private_key
from domain.errors import InvalidInputError, describe_validation_error
from domain.shops import SETTING_ALIASES, ShopSettings, check_shop_id, check_shop_name
from store.secret_box import SecretBox
from store.shops import Shop, ShopExistsError, ShopStore, seal_dkim

PREFIX = "/ecom/v1/shops"


class ShopBody(CamelModel):
    id: str = Field(max_length=64)
    """The shop's slug: lowercase letters, digits and hyphens; it never changes."""
    name: str = Field(max_length=200)
    settings: ShopSettings = ShopSettings()


class ShopChanges(CamelModel):
    name: str | None = Field(default=None, max_length=200)
    settings: dict[str, Any] = Field(default_factory=dict)
    """The settings to change, by their names in `ShopSettings`: a value sets one, null unsets
    it (the deployment's applies again); settings not named stay as they are. `dkim` is set as
    {domain, selector, privateKey (PEM)}: the key is sealed, and answers show its fingerprint."""


class ShopView(CamelModel):
    id: str
    name: str
    settings: ShopSettings
    """The shop's own settings only; any other is the deployment's."""
    created_date: AwareDatetime
    updated_date: AwareDatetime


class ShopEnvelope(CamelModel):
    shop: ShopView


class ShopList(CamelModel):
    shops: list[ShopView]


ShopCheck = Callable[[str, ShopSettings], None]
"""Raises InvalidInputError when a shop's settings would not render (workers.shop_checks: the
policy with the shop's templates); the API cannot render templates itself."""


def shop_router(
    shops: ShopStore,
    auth: Authenticator,
    check: ShopCheck | None = None,
    box: SecretBox | None = None,
) -> APIRouter:
    """`box` seals the DKIM keys shops set (the subscribers' secrets' keys); None: refused."""
    router = APIRouter(
        prefix=PREFIX,
        tags=["shops (platform)"],
        responses=ERROR_RESPONSES,
        dependencies=[Depends(checked_path_ids)],
    )
    reads = Depends(_platform(auth, Scope.READ))
    manages = Depends(_platform(auth, Scope.MANAGE))

    @router.get("", response_model=ShopList, summary="List shops", dependencies=[reads])
    async def listing() -> JSONResponse:
        return JSONResponse({"shops": [_view(shop) for shop in await shops.list()]})

    @router.post(
        "",
        status_code=201,
        response_model=ShopEnvelope,
        summary="Add a shop",
        dependencies=[manages],
        responses={409: {"model": ErrorBody, "description": "A shop has that id already"}},
    )
    async def add(body: ShopBody) -> JSONResponse:
        problems = _problems(body.id, body.name)
        if body.settings.dkim is not None:
            # A sealed key comes only from a PEM this deployment sealed (PATCH).
            problems.append(_DKIM_BY_PATCH)
        if problems:
            raise ApiError(400, "invalid_request", "the shop is not valid", problems)
        await _rendered(check, body.id, body.settings)
        try:
            made = await shops.add(body.id, body.name, body.settings)
        except ShopExistsError as err:
            raise ApiError(409, "conflict", str(err)) from None
        return JSONResponse({"shop": _view(made)}, status_code=201)

    @router.get(
        "/{shop_id}", response_model=ShopEnvelope, summary="Read a shop", dependencies=[reads]
    )
    async def get(shop_id: str) -> JSONResponse:
        shop = await shops.get(shop_id)
        if shop is None:
            raise _not_found(shop_id)
        return JSONResponse({"shop": _view(shop)})

    @router.patch(
        "/{shop_id}",
        response_model=ShopEnvelope,
        summary="Change a shop's name or some of its settings",
        dependencies=[manages],
    )
    async def change(shop_id: str, body: ShopChanges) -> JSONResponse:
        problems = _problems(None, body.name)
        if problems:
            raise ApiError(400, "invalid_request", "the change is not valid", problems)
        current = await shops.get(shop_id)
        if current is None:
            raise _not_found(shop_id)
        changes = _with_sealed_dkim(body.settings, box)
        try:
            candidate = current.settings.changed(changes)
        except InvalidInputError as err:
            raise invalid_input(err, "invalid_request") from None
        if CHECKED_BY & {SETTING_ALIASES.get(name, name) for name in changes}:
            await _rendered(check, shop_id, candidate)
        try:
            changed = await shops.set(shop_id, name=body.name, changes=changes)
        except InvalidInputError as err:
            raise invalid_input(err, "invalid_request") from None
        if changed is None:
            raise _not_found(shop_id)
        return JSONResponse({"shop": _view(changed)})

    return router


RENDERED_BY = frozenset({"policy", "templatesDir", "defaultLanguage"})
"""The settings a shop's templates are rendered with: a change of one is checked by rendering."""
CHECKED_BY = RENDERED_BY | {"dkim", "mailFrom"}
"""The settings `check` looks at: the rendered ones, and the DKIM identity's alignment with the
From address (which needs the deployment's From when the shop sets none)."""
_DKIM_BY_PATCH = FieldProblem(
    field="settings.dkim",
    message="set a shop's DKIM key with PATCH, as {domain, selector, privateKey}",
)
_DKIM_FIELDS = {"domain", "selector", "privateKey"}


def _with_sealed_dkim(changes: dict[str, Any], box: SecretBox | None) -> dict[str, Any]:
    """`changes` with a `dkim` given as {domain, selector, privateKey} replaced by the sealed
    setting the store keeps; a 400 naming the field for anything else."""
    given = changes.get("dkim")
    if given is None:
        return changes
    if not isinstance(given, dict) or set(given) != _DKIM_FIELDS:
        raise _dkim_problem("give exactly domain, selector and privateKey (PEM)")
    if box is None:
        raise _dkim_problem("this API process has no key to seal a DKIM key with")
    if not isinstance(given["privateKey"], str):
        raise _dkim_problem("privateKey: a PEM text")
    try:
        key = read_private_key(given["privateKey"])
    except DkimError as err:
        raise _dkim_problem(f"privateKey: {err}") from None
    try:
        sealed: DkimSetting = seal_dkim(box, given["domain"], given["selector"], key)
    except ValidationError as err:
        raise _dkim_problem("; ".join(describe_validation_error(err))) from None
    return {**changes, "dkim": sealed}


def _dkim_problem(message: str) -> ApiError:
    return ApiError(
        400,
        "invalid_request",
        "the change is not valid",
        [FieldProblem(field="settings.dkim", message=message)],
    )


async def _rendered(check: ShopCheck | None, shop_id: str, settings: ShopSettings) -> None:
    if check is None:
        return
    try:
        # Rendering every template in each language takes some CPU: off the event loop.
        await asyncio.to_thread(check, shop_id, settings)
    except InvalidInputError as err:
        raise invalid_input(err, "invalid_request") from None


def _platform(auth: Authenticator, scope: Scope) -> Callable[[Credentials], Awaitable[ApiKey]]:
    """`auth.require(scope)`, for platform keys only."""
    key_of = auth.require(scope)

    async def dependency(credentials: Credentials) -> ApiKey:
        key = await key_of(credentials)
        if not key.platform:
            raise ApiError(
                403,
                "forbidden",
                f"the API key {key.id} belongs to a shop; the shops registry needs a platform key",
            )
        return key

    return dependency


def _problems(shop_id: str | None, name: str | None) -> list[FieldProblem]:
    problems = []
    for field, value, check in (("id", shop_id, check_shop_id), ("name", name, check_shop_name)):
        if value is not None:
            try:
                check(value)
            except ValueError as err:
                problems.append(FieldProblem(field=field, message=str(err)))
    return problems


def _not_found(shop_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no shop with id {shop_id!r}")


def _view(shop: Shop) -> dict[str, Any]:
    return ShopView(
        id=shop.id,
        name=shop.name,
        settings=shop.settings,
        created_date=shop.created_date,
        updated_date=shop.updated_date,
    ).to_json_dict()
