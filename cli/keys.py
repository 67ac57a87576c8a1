"""`checkout-recovery keys`: make, list and revoke API keys."""

from typing import Annotated

import typer

from cli.support import (
    BadInputError,
    NotFoundError,
    print_json,
    require_shop,
    run_command,
    settings_or_fail,
)
from domain.access import ApiKey, parse_scopes
from domain.shops import DEFAULT_SHOP, check_shop_id
from store.api_keys import ApiKeyStore
from workers.resources import open_store

keys_app = typer.Typer(help="API keys for the HTTP service.", no_args_is_help=True)


def _key_json(key: ApiKey) -> dict[str, object]:
    return {
        "id": key.id,
        "name": key.name,
        "scopes": sorted(key.scopes),
        "createdDate": key.created_date.isoformat(),
        "revokedDate": key.revoked_date.isoformat() if key.revoked_date else None,
        "shop": key.shop_id,
        "platform": key.platform,
    }


@keys_app.command("create")
def create(
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            help="abandoned-checkouts:read or abandoned-checkouts:manage (repeat for both).",
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="What the key is for.")] = "unnamed",
    shop: Annotated[
        str, typer.Option("--shop", help="The shop the key acts for (its data only).")
    ] = DEFAULT_SHOP,
    platform: Annotated[
        bool,
        typer.Option(
            "--platform",
            help="A platform key: acts for the shop a request names in the "
            "X-Checkout-Recovery-Shop header (default when none is named).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Make a key; its token is printed once and cannot be shown again."""
    try:
        scopes = parse_scopes(scope)
    except ValueError as err:
        raise BadInputError(f"--scope: {err}") from None
    if platform and shop != DEFAULT_SHOP:
        raise BadInputError("--platform: a platform key has no shop; leave out --shop")
    try:
        shop_id = None if platform else check_shop_id(shop)
    except ValueError as err:
        raise BadInputError(f"--shop: {err}") from None
    settings = settings_or_fail()

    async def run() -> tuple[ApiKey, str]:
        async with open_store(settings) as store:
            if shop_id is not None:
                # A key for a shop the deployment does not serve would act for no one's data.
                await require_shop(store, shop_id)
            return await ApiKeyStore(store.engine).create(name, scopes, shop_id=shop_id)

    key, token = run_command(run())
    if as_json:
        print_json({**_key_json(key), "token": token})
        return
    typer.echo(token)
    acts_for = "a platform key" if key.platform else f"shop {key.shop_id}"
    typer.echo(
        f"(key {key.id}, {acts_for}, scopes {' '.join(sorted(scopes))}; keep the token now, "
        "it is not shown again)",
        err=True,
    )


@keys_app.command("list")
def listing(
    include_revoked: Annotated[bool, typer.Option("--all", help="Revoked keys too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The keys (their ids, names and scopes; never their secrets)."""
    settings = settings_or_fail()

    async def run() -> list[ApiKey]:
        async with open_store(settings) as store:
            return await ApiKeyStore(store.engine).list(include_revoked)

    keys = run_command(run())
    if as_json:
        print_json([_key_json(k) for k in keys])
        return
    if not keys:
        typer.echo("no API keys")
    for key in keys:
        revoked = f"  revoked {key.revoked_date:%Y-%m-%d %H:%M}" if key.revoked_date else ""
        shop = "(platform)" if key.platform else key.shop_id
        typer.echo(
            f"{key.id}  {key.name:<20}  {shop:<12}  {' '.join(sorted(key.scopes))}"
            f"  created {key.created_date:%Y-%m-%d %H:%M}{revoked}"
        )


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Revoke a key by its id; running services stop accepting it within seconds."""
    settings = settings_or_fail()

    async def run() -> None:
        async with open_store(settings) as store:
            revoked = await ApiKeyStore(store.engine).revoke(key_id)
        if not revoked:
            raise NotFoundError(f"no live API key with id {key_id!r}")

    run_command(run())
    typer.echo(f"revoked {key_id}")
