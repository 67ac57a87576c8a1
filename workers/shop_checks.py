"""A shop's settings checked as `policy check` checks a policy: the policy the shop's flows get
(its own, or the deployment's) rendered with the shop's templates in its default language. For
`shops add|set` on the command line and for POST/PATCH /ecom/v1/shops, before anything is stored.
"""

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from activities.rendering import TemplateRenderer
from domain.checkout import AbandonedCheckout
from domain.errors import InvalidInputError
from domain.policy import RecoveryPolicy
from domain.shops import ShopSettings, dkim_problems, effective_settings
from workers.policy_files import load_policy
from workers.settings import Settings
from workers.worker import template_renderer_for


def checked_stored_policy(
    shop_id: str, text: str, renderer: TemplateRenderer, sample: AbandonedCheckout | None = None
) -> RecoveryPolicy:
    """The shop's stored policy text, checked with `renderer` as a policy file is."""
    with _policy_file(text) as path:
        try:
            return load_policy(str(path), renderer, sample=sample)
        except InvalidInputError as err:
            raise InvalidInputError(
                f"recovery policy of the shop {shop_id}", err.problems
            ) from None


def check_shop_rendering(shop_id: str, settings: ShopSettings, deployment: Settings) -> None:
    """Raises InvalidInputError naming what would fail: a templates folder that is not there, a
    template of the shop's policy that does not render with the shop's templates, a DKIM domain
    that does not align with the shop's From address."""
    effective = effective_settings(settings, deployment)
    misaligned = dkim_problems(effective)
    if misaligned:
        raise InvalidInputError(f"settings of the shop {shop_id}", misaligned)
    try:
        renderer = template_renderer_for(effective)
    except NotADirectoryError:
        raise InvalidInputError(
            f"settings of the shop {shop_id}",
            [f"templatesDir: {effective.templates_dir}: no such folder"],
        ) from None
    if settings.policy is not None:
        checked_stored_policy(shop_id, settings.policy, renderer)
    else:
        load_policy(deployment.policy, renderer)


@contextlib.contextmanager
def _policy_file(text: str) -> Iterator[Path]:
    """The stored policy text as a file, for the checks that policy files go through."""
    with tempfile.TemporaryDirectory(prefix="shop-policy-") as folder:
        path = Path(folder) / "policy.toml"
        path.write_text(text, encoding="utf-8")
        yield path
