"""Shops: one deployment serves many, and every row belongs to one. Pure: no I/O.

A shop is known by a short slug, chosen by the operator and never PII (it is logged, put in ids
and in metric labels). A deployment that never names a shop runs everything in `default`, so a
single-shop install changes nothing.
"""

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Protocol

from pydantic import AfterValidator, ConfigDict, Field, ValidationError
from pydantic.networks import validate_email
from pydantic_core import PydanticCustomError

from domain.base import CamelModel
from domain.checkout import (
    MAX_EMAIL_LENGTH,
    LanguageTag,
    NameText,
    TimeZoneName,
    WebUrl,
    control_character_problem,
)
from domain.dkim import KEEP_SEALED, DkimSetting, alignment_problem
from domain.errors import InvalidInputError, describe_validation_error
from domain.policy import RecoveryPolicy, parse_policy

DEFAULT_SHOP = "default"
"""The shop of every row made before shops existed, and of a single-shop deployment."""

SHOP_ID_PATTERN = r"[a-z0-9][a-z0-9-]{0,62}"
_SHOP_ID = re.compile(SHOP_ID_PATTERN)


def check_shop_id(shop_id: str) -> str:
    """The shop id itself when it is a valid slug; raises ValueError saying the rule otherwise."""
    if not _SHOP_ID.fullmatch(shop_id):
        raise ValueError(
            "a shop id is 1 to 63 lowercase letters, digits and hyphens, starting with a letter "
            "or a digit"
        )
    return shop_id


# --- Per-shop settings -----------------------------------------------------------------------

_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*",
    re.ASCII,
)
MAX_POLICY_LENGTH = 100_000
"""A policy of a hundred steps is a few kilobytes; this only bounds what the store keeps."""


def parse_policy_text(text: str, source: str) -> RecoveryPolicy:
    """A policy from its TOML text, checked as a policy file is (domain.policy.parse_policy);
    InvalidInputError naming `source`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InvalidInputError(f"recovery policy {source}", [f"not valid TOML: {err}"]) from None
    return parse_policy(data, source)


def _policy_text(value: str) -> str:
    try:
        parse_policy_text(value, "of the shop")
    except InvalidInputError as err:
        raise ValueError("; ".join(err.problems)) from None
    except (OverflowError, RecursionError) as err:
        raise ValueError(f"a value is out of range ({err})") from None
    return value


def _address_of(value: str) -> str:
    """The address in `value` (which may carry a display name, as From and Reply-To do)."""
    try:
        return validate_email(value)[1]
    except PydanticCustomError as err:
        raise ValueError(f"not an email address ({err.message()})") from None


def _mailbox(value: str) -> str:
    _address_of(value)
    return value


def _bare_address(value: str) -> str:
    if _address_of(value) != value:
        raise ValueError("an address alone, without a name (unsubscribe@shop.example)")
    return value


def _clean(value: str) -> str:
    problem = control_character_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _hostname(value: str) -> str:
    if not _HOSTNAME.fullmatch(value):
        raise ValueError("not a domain name such as 'shop.example'")
    return value


Mailbox = Annotated[str, Field(max_length=MAX_EMAIL_LENGTH), AfterValidator(_mailbox)]
BareAddress = Annotated[str, Field(max_length=MAX_EMAIL_LENGTH), AfterValidator(_bare_address)]


class ShopSettings(CamelModel):
    """What one shop sets for itself; every field unset (None) is the deployment's
    (workers.settings), so a shop with no settings, `default` among them, runs as before.

    Kept as JSON in the store, so every process (API, worker, CLI) reads the same values and a
    change needs no shared disk or restart. The policy is its TOML text for the same reason,
    checked on the way in with the parser policy files go through."""

    model_config = ConfigDict(frozen=True)

    policy: (
        Annotated[str, Field(max_length=MAX_POLICY_LENGTH), AfterValidator(_policy_text)] | None
    ) = None
    """The recovery policy's TOML text; unset: the engine's policy (service.reporting_policy)."""
    shop_name: Annotated[NameText, Field(min_length=1)] | None = None
    """The name buyers read in emails (CHECKOUT_RECOVERY_SHOP_NAME)."""
    mail_from: Mailbox | None = None
    """The From address (CHECKOUT_RECOVERY_MAIL_FROM)."""
    reply_to: Mailbox | None = None
    """The Reply-To address; unset: the deployment sets none, replies go to From."""
    message_id_domain: Annotated[str, AfterValidator(_hostname)] | None = None
    """The domain of Message-IDs; unset: the From address's domain."""
    public_url: WebUrl | None = None
    """Where the recovery and unsubscribe links start (CHECKOUT_RECOVERY_PUBLIC_URL)."""
    default_language: LanguageTag | None = None
    """For buyers whose checkout names no language (CHECKOUT_RECOVERY_DEFAULT_LANGUAGE)."""
    time_zone: TimeZoneName | None = None
    """For buyers whose checkout names no zone; unset: the policy's `time_zone`."""
    templates_dir: (
        Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_clean)] | None
    ) = None
    """The shop's template overrides folder (CHECKOUT_RECOVERY_TEMPLATES_DIR)."""
    unsubscribe_mailbox: BareAddress | None = None
    """The mailto unsubscribe address (CHECKOUT_RECOVERY_UNSUBSCRIBE_MAILBOX)."""
    dkim: DkimSetting | None = None
    """The shop's own DKIM identity, its key sealed (CHECKOUT_RECOVERY_DKIM_...); unset: the
    deployment's, for a From domain it aligns with."""

    def recovery_policy(self) -> RecoveryPolicy | None:
        return None if self.policy is None else parse_policy_text(self.policy, "of the shop")

    def changed(self, changes: Mapping[str, object]) -> "ShopSettings":
        """These settings with `changes` (by field name, snake_case or camelCase) applied: a
        value replaces the field's, None unsets it. InvalidInputError names each bad field (in
        camelCase, as the API spells them)."""
        # The sealed DKIM key kept: it is the stored settings' own, only not shown.
        merged: dict[str, object] = self.model_dump(
            by_alias=True, exclude_none=True, context=KEEP_SEALED
        )
        for name, value in changes.items():
            field = SETTING_ALIASES.get(name, name)
            if value is None:
                merged.pop(field, None)
            else:
                merged[field] = value
        return parse_shop_settings(merged)


SETTING_ALIASES = {
    spelling: info.alias or name
    for name, info in ShopSettings.model_fields.items()
    for spelling in (name, info.alias or name)
}
"""Each setting's camelCase name (the API's, and the stored JSON's), from either spelling."""


def parse_shop_settings(data: object) -> ShopSettings:
    try:
        return ShopSettings.model_validate(data)
    except ValidationError as err:
        raise InvalidInputError("shop settings", describe_validation_error(err)) from None


MAX_SHOP_NAME_LENGTH = 200


def check_shop_name(name: str) -> str:
    """The shop's name for operators (lists, the dashboard); raises ValueError saying why not."""
    if not name.strip() or len(name) > MAX_SHOP_NAME_LENGTH:
        raise ValueError(f"a shop name is 1 to {MAX_SHOP_NAME_LENGTH} characters")
    return _clean(name)


SettingSource = Literal["shop", "deployment"]


class DeploymentSettings(Protocol):
    """The deployment's values a shop may override: workers.settings.Settings has them all."""

    shop_name: str
    mail_from: str
    public_url: str
    default_language: str
    templates_dir: Path | None
    unsubscribe_mailbox: str | None


@dataclass(frozen=True)
class EffectiveShopSettings:
    """A shop's settings as its flows see them, and where each value came from."""

    policy: RecoveryPolicy | None
    """None: the engine's policy (service.reporting_policy)."""
    shop_name: str
    mail_from: str
    reply_to: str | None
    message_id_domain: str | None
    """None: the From address's domain."""
    public_url: str
    default_language: str
    time_zone: str | None
    """None: the policy's."""
    templates_dir: Path | None
    unsubscribe_mailbox: str | None
    """None: unsubscribe@<the From address's domain>."""
    dkim: DkimSetting | None
    """None: the deployment's DKIM identity, when it aligns with the From domain."""
    sources: Mapping[str, SettingSource]
    """For each field above: "shop" when the shop sets it, else "deployment"."""


def effective_settings(shop: ShopSettings, deployment: DeploymentSettings) -> EffectiveShopSettings:
    """The one rule: a value the shop sets wins, any other is the deployment's."""
    sources: dict[str, SettingSource] = {
        name: "deployment" if getattr(shop, name) is None else "shop"
        for name in ShopSettings.model_fields
    }
    return EffectiveShopSettings(
        policy=shop.recovery_policy(),
        shop_name=shop.shop_name or deployment.shop_name,
        mail_from=shop.mail_from or deployment.mail_from,
        reply_to=shop.reply_to,
        message_id_domain=shop.message_id_domain,
        public_url=shop.public_url or deployment.public_url,
        default_language=shop.default_language or deployment.default_language,
        time_zone=shop.time_zone,
        templates_dir=Path(shop.templates_dir) if shop.templates_dir else deployment.templates_dir,
        unsubscribe_mailbox=shop.unsubscribe_mailbox or deployment.unsubscribe_mailbox,
        dkim=shop.dkim,
        sources=sources,
    )


def dkim_problems(effective: EffectiveShopSettings) -> list[str]:
    """Why the shop's DKIM identity may not sign its mail: its d= must align with the From
    address the shop's emails carry (its own or the deployment's), for DMARC."""
    if effective.dkim is None:
        return []
    problem = alignment_problem(effective.dkim.domain, effective.mail_from)
    return [] if problem is None else [f"dkim: {problem}"]
