"""`checkout-recovery shops add|list|show|set`: the shops this deployment serves, and their own
settings (domain.shops.ShopSettings), kept in the store so that every process sees a change.

A setting the shop does not set is the deployment's (CHECKOUT_RECOVERY_...); `show` says where
each value comes from. A policy is stored as its TOML text once it has been checked as
`policy check` checks one: parsed, and every template rendered with the shop's own templates.
"""

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Column, Table

from activities.rendering import TemplateRenderer
from cli.output import JsonFlag, console, iso
from cli.support import (
    BadInputError,
    NotFoundError,
    checked_policy,
    existing_shop,
    print_json,
    run_command,
    settings_or_fail,
)
from domain.checkout import AbandonedCheckout
from domain.dkim import DkimError, DkimSetting, read_private_key
from domain.errors import InvalidInputError, describe_validation_error
from domain.policy import RecoveryPolicy
from domain.shops import (
    SETTING_ALIASES,
    EffectiveShopSettings,
    ShopSettings,
    check_shop_id,
    check_shop_name,
    dkim_problems,
    effective_settings,
)
from store.shops import Shop, ShopExistsError, ShopStore, open_dkim, seal_dkim
from workers.link_secret import webhook_secret_box
from workers.policy_files import load_policy, resolve
from workers.resources import open_store
from workers.settings import Settings
from workers.shop_checks import checked_stored_policy
from workers.worker import template_renderer_for

shops_app = typer.Typer(
    help="The shops this deployment serves and their own settings.", no_args_is_help=True
)

ShopArgument = Annotated[str, typer.Argument(metavar="SHOP", help="The shop's id (a slug).")]
PolicyFile = Annotated[
    str | None,
    typer.Option("--policy", help="The shop's recovery policy: a TOML file or a built-in name."),
]
ShopName = Annotated[
    str | None, typer.Option("--shop-name", help="The name buyers read in emails.")
]
MailFrom = Annotated[str | None, typer.Option("--mail-from", help="The From address.")]
ReplyTo = Annotated[str | None, typer.Option("--reply-to", help="The Reply-To address.")]
MessageIdDomain = Annotated[
    str | None, typer.Option("--message-id-domain", help="The domain of Message-IDs.")
]
PublicUrl = Annotated[
    str | None, typer.Option("--public-url", help="Where recovery and unsubscribe links start.")
]
Language = Annotated[
    str | None, typer.Option("--language", help="The default language (en, de-AT, ...).")
]
TimeZone = Annotated[
    str | None, typer.Option("--time-zone", help="The shop's IANA time zone (Europe/Berlin).")
]
TemplatesDir = Annotated[
    Path | None, typer.Option("--templates-dir", help="The shop's template overrides folder.")
]
UnsubscribeMailbox = Annotated[
    str | None, typer.Option("--unsubscribe-mailbox", help="The mailto unsubscribe address.")
]
DkimDomain = Annotated[
    str | None,
    typer.Option("--dkim-domain", help="DKIM d=: the From domain or a parent of it."),
]
DkimSelector = Annotated[
    str | None, typer.Option("--dkim-selector", help="DKIM s=: the TXT record's first label.")
]
DkimKeyFile = Annotated[
    Path | None,
    typer.Option("--dkim-key-file", help="The RSA private key (PEM); kept sealed, never shown."),
]


def _field_option(field: str) -> str:
    return "--" + ("language" if field == "default_language" else field.replace("_", "-"))


# --- the commands --------------------------------------------------------------------------


@shops_app.command("add")
def add(  # noqa: PLR0917 - typer takes each option as a parameter
    shop_id: ShopArgument,
    name: Annotated[str, typer.Option("--name", help="The shop's name for operators.")],
    policy: PolicyFile = None,
    shop_name: ShopName = None,
    mail_from: MailFrom = None,
    reply_to: ReplyTo = None,
    message_id_domain: MessageIdDomain = None,
    public_url: PublicUrl = None,
    default_language: Language = None,
    time_zone: TimeZone = None,
    templates_dir: TemplatesDir = None,
    unsubscribe_mailbox: UnsubscribeMailbox = None,
    as_json: JsonFlag = False,
) -> None:
    """Register a shop; every setting not given here is the deployment's."""
    changes = _changes(locals())
    _check_id(shop_id)
    _check_name(name)
    settings = settings_or_fail()
    shop_settings = _checked(shop_id, ShopSettings(), changes, policy, settings)

    async def run() -> Shop:
        async with open_store(settings) as store:
            try:
                return await ShopStore(store.engine).add(shop_id, name, shop_settings)
            except ShopExistsError as err:
                raise BadInputError(str(err)) from None

    _print_shop(run_command(run()), settings, as_json, "added")


@shops_app.command("set")
def set_settings(  # noqa: PLR0917 - typer takes each option as a parameter
    shop_id: ShopArgument,
    name: Annotated[
        str | None, typer.Option("--name", help="The shop's name for operators.")
    ] = None,
    policy: PolicyFile = None,
    shop_name: ShopName = None,
    mail_from: MailFrom = None,
    reply_to: ReplyTo = None,
    message_id_domain: MessageIdDomain = None,
    public_url: PublicUrl = None,
    default_language: Language = None,
    time_zone: TimeZone = None,
    templates_dir: TemplatesDir = None,
    unsubscribe_mailbox: UnsubscribeMailbox = None,
    dkim_domain: DkimDomain = None,
    dkim_selector: DkimSelector = None,
    dkim_key_file: DkimKeyFile = None,
    clear: Annotated[
        list[str] | None,
        typer.Option(
            "--clear",
            metavar="SETTING",
            help="Unset a setting, so the deployment's applies again (--clear mail-from).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change some of a shop's settings; the others stay as they are."""
    changes = _changes(locals())
    _check_id(shop_id)
    if name is not None:
        _check_name(name)
    settings = settings_or_fail()
    dkim = _sealed_dkim(dkim_domain, dkim_selector, dkim_key_file, settings)
    if dkim is not None:
        changes["dkim"] = dkim
    changes |= dict.fromkeys(_cleared(clear or [], changes, policy), None)
    if not changes and policy is None and name is None:
        raise BadInputError("nothing to change: give a setting, --name or --clear")

    async def run() -> Shop:
        async with open_store(settings) as store:
            shops = ShopStore(store.engine)
            current = await existing_shop(shops, shop_id)
            # Checked against what the shop will be, templates included, before it is changed.
            new = _checked(shop_id, current.settings, changes, policy, settings)
            policy_text = {"policy": new.policy} if policy is not None else {}
            changed = await shops.set(shop_id, name=name, changes=changes | policy_text)
            if changed is None:  # removed meanwhile
                raise NotFoundError(f"no shop with id {shop_id!r}")
            return changed

    _print_shop(run_command(run()), settings, as_json, "changed")
    if dkim is not None and not as_json:
        # The one thing the operator does next: publish the public key.
        console().print(f"publish the TXT record {dkim.record_name}: {_txt_record(dkim, settings)}")


@shops_app.command("list")
def listing(as_json: JsonFlag = False) -> None:
    """The shops, by id, with which settings each one sets itself."""
    settings = settings_or_fail()

    async def run() -> list[Shop]:
        async with open_store(settings) as store:
            return await ShopStore(store.engine).list()

    found = run_command(run())
    if as_json:
        print_json({"shops": [_shop_json(shop) for shop in found]})
        return
    table = Table("ID", "Name", Column("Own settings", overflow="fold"), "Updated (UTC)")
    for shop in found:
        own = sorted(shop.settings.model_dump(exclude_none=True))
        table.add_row(shop.id, shop.name, ", ".join(own) or "-", iso(shop.updated_date))
    console().print(table)


@shops_app.command("show")
def show(shop_id: ShopArgument, as_json: JsonFlag = False) -> None:
    """The shop's effective settings, each with where it comes from: the shop, or the
    deployment (CHECKOUT_RECOVERY_...)."""
    _check_id(shop_id)
    settings = settings_or_fail()

    async def run() -> Shop:
        async with open_store(settings) as store:
            return await existing_shop(ShopStore(store.engine), shop_id)

    _print_shop(run_command(run()), settings, as_json, None)


# --- `policy check --shop` -------------------------------------------------------------------


def checked_shop_policy(
    shop_id: str, file: str | None, sample: AbandonedCheckout
) -> tuple[TemplateRenderer, RecoveryPolicy]:
    """For `policy check --shop`: the shop's renderer (its own templates over the shipped ones,
    in its language) and the policy checked with it: `file` when given, else the shop's own
    policy, else the deployment's (CHECKOUT_RECOVERY_POLICY)."""
    _check_id(shop_id)
    settings = settings_or_fail()

    async def run() -> Shop:
        async with open_store(settings) as store:
            return await existing_shop(ShopStore(store.engine), shop_id)

    shop = run_command(run())
    renderer = _renderer(effective_settings(shop.settings, settings), settings)
    if file is not None or shop.settings.policy is None:
        name = file or settings.policy
        return renderer, checked_policy(name, lambda: load_policy(name, renderer, sample=sample))
    return renderer, checked_stored_policy(shop_id, shop.settings.policy, renderer, sample)


# --- helpers -------------------------------------------------------------------------------

_NOT_SETTINGS = {
    "shop_id",
    "name",
    "policy",
    "clear",
    "as_json",
    "settings",
    "dkim_domain",
    "dkim_selector",
    "dkim_key_file",
}


def _changes(options: dict[str, Any]) -> dict[str, object]:
    """The settings given as options (not None), by field name; the policy apart: it is read
    from its file."""
    return {
        field: str(value) if isinstance(value, Path) else value
        for field, value in options.items()
        if field not in _NOT_SETTINGS and value is not None
    }


def _cleared(names: list[str], changes: dict[str, object], policy: str | None) -> list[str]:
    by_option = {
        _field_option(field).removeprefix("--"): field for field in ShopSettings.model_fields
    }
    fields = []
    for name in names:
        field = by_option.get(name.removeprefix("--"))
        if field is None:
            known = ", ".join(sorted(by_option))
            raise BadInputError(f"--clear {name}: not a setting; the settings: {known}")
        if field in changes or (field == "policy" and policy is not None):
            raise BadInputError(f"--clear {name}: the same command sets it too")
        fields.append(field)
    return fields


def _sealed_dkim(
    domain: str | None, selector: str | None, key_file: Path | None, settings: Settings
) -> DkimSetting | None:
    """The shop's DKIM identity from --dkim-domain, --dkim-selector and --dkim-key-file (all
    three or none), its key read, checked and sealed with the subscribers' secrets' keys."""
    given = {"--dkim-domain": domain, "--dkim-selector": selector, "--dkim-key-file": key_file}
    missing = [option for option, value in given.items() if value is None]
    if len(missing) == len(given):
        return None
    if missing:
        raise BadInputError(f"{', '.join(given)} go together; missing: {', '.join(missing)}")
    assert domain is not None and selector is not None and key_file is not None
    try:
        text = key_file.read_bytes()
    except OSError as err:
        raise BadInputError(f"--dkim-key-file {key_file}: {err.strerror}") from None
    try:
        key = read_private_key(text)
    except DkimError as err:
        raise BadInputError(f"--dkim-key-file {key_file}: {err}") from None
    try:
        return seal_dkim(webhook_secret_box(settings), domain, selector, key)
    except ValidationError as err:
        problems = "; ".join(describe_validation_error(err, lambda loc: f"--dkim-{loc[0]}"))
        raise BadInputError(problems) from None


def _txt_record(dkim: DkimSetting, settings: Settings) -> str:
    return open_dkim(webhook_secret_box(settings), dkim).txt_record


def _check_id(shop_id: str) -> None:
    try:
        check_shop_id(shop_id)
    except ValueError as err:
        raise BadInputError(f"shop {shop_id!r}: {err}") from None


def _check_name(name: str) -> None:
    try:
        check_shop_name(name)
    except ValueError as err:
        raise BadInputError(f"--name: {err}") from None


def _policy_text(file: str) -> str:
    return resolve(file).read_text(encoding="utf-8")


def _checked(
    shop_id: str,
    current: ShopSettings,
    changes: dict[str, object],
    policy: str | None,
    settings: Settings,
) -> ShopSettings:
    """The shop's settings once `changes` and the policy file `policy` apply: each value
    checked (exit 2 naming the option), and the policy, the shop's own or the deployment's,
    rendered with the shop's templates in its language, as `policy check` renders it."""
    try:
        changed = current.changed(changes)
    except InvalidInputError as err:
        problems = _as_options(err.problems)
        raise InvalidInputError(f"settings of the shop {shop_id}", problems) from None
    # The DKIM identity must align with the From address the shop's emails will carry.
    misaligned = dkim_problems(effective_settings(changed, settings))
    if misaligned:
        raise InvalidInputError(f"settings of the shop {shop_id}", _as_options(misaligned))
    if policy is None and not {"templates_dir", "default_language"} & changes.keys():
        return changed  # nothing the policy's templates depend on has changed
    renderer = _renderer(effective_settings(changed, settings), settings)
    if policy is not None:
        checked_policy(policy, lambda: load_policy(policy, renderer))
        return changed.changed({"policy": _policy_text(policy)})
    if changed.policy is not None:
        checked_stored_policy(shop_id, changed.policy, renderer)
    else:
        checked_policy(settings.policy, lambda: load_policy(settings.policy, renderer))
    return changed


def _as_options(problems: list[str]) -> list[str]:
    """`mail_from: ...` as the option that gave it: `--mail-from: ...`."""
    by_alias = {SETTING_ALIASES[field]: field for field in ShopSettings.model_fields}
    named = []
    for problem in problems:
        alias, sep, rest = problem.partition(": ")
        field = by_alias.get(alias)
        named.append(f"{_field_option(field)}: {rest}" if sep and field else problem)
    return named


def _renderer(effective: EffectiveShopSettings, settings: Settings) -> TemplateRenderer:
    try:
        return template_renderer_for(effective)
    except NotADirectoryError:
        source = effective.sources["templates_dir"]
        where = "--templates-dir" if source == "shop" else "CHECKOUT_RECOVERY_TEMPLATES_DIR"
        raise BadInputError(f"{where} {effective.templates_dir}: no such folder") from None


def _shop_json(shop: Shop) -> dict[str, Any]:
    return {
        "id": shop.id,
        "name": shop.name,
        "settings": shop.settings.to_json_dict(),
        "createdDate": iso(shop.created_date),
        "updatedDate": iso(shop.updated_date),
    }


def _effective_json(effective: EffectiveShopSettings) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field, info in ShopSettings.model_fields.items():
        value = getattr(effective, field)
        if isinstance(value, RecoveryPolicy):
            value = value.name
        elif isinstance(value, DkimSetting):
            value = value.to_json_dict()  # without its key
        elif isinstance(value, Path):
            value = str(value)
        values[info.alias or field] = {"value": value, "from": effective.sources[field]}
    return values


def _print_shop(shop: Shop, settings: Settings, as_json: bool, what: str | None) -> None:
    effective = _effective_json(effective_settings(shop.settings, settings))
    if as_json:
        print_json({"shop": _shop_json(shop) | {"effective": effective}})
        return
    out = console()
    if what is not None:
        out.print(f"shop {shop.id} {what}")
    out.print(f"{shop.id}: {shop.name}  (updated {iso(shop.updated_date)})")
    table = Table("Setting", Column("Value", overflow="fold"), "From")
    for name, item in effective.items():
        value = item["value"]
        shown = _deployment_default(name) if value is None else str(value)
        table.add_row(name, shown, item["from"])
    out.print(table)


def _deployment_default(name: str) -> str:
    """What an unset value means, in words."""
    return {
        "policy": "the running engine's (CHECKOUT_RECOVERY_POLICY until a worker starts)",
        "replyTo": "none: replies go to the From address",
        "messageIdDomain": "the From address's domain",
        "timeZone": "the policy's time_zone",
        "templatesDir": "none: the shipped templates",
        "unsubscribeMailbox": "unsubscribe@ the From address's domain",
        "dkim": "the deployment's (CHECKOUT_RECOVERY_DKIM_...) if it aligns with From, else none",
    }.get(name, "-")
