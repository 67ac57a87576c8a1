"""How the recovery link hands the step's coupon to the shop: in the form the shop's checkout reads.

Two forms, as shop systems take discount codes from a URL:

- a query parameter added to the checkout URL (`discount` gives `...?discount=CODE`, or
  `&discount=CODE` after an existing query; the fragment stays last);
- a URL template of the shop's own, such as Shopify's discount link
  `https://shop.example/discount/{code}?redirect={path}`, with the placeholders `{code}` (the
  code), `{url}` (the whole checkout URL) and `{path}` (its path, query and fragment), each
  percent-encoded for where it stands (`{path}` keeps its slashes).

Pure: the redirect route asks the store for the step's valid coupon and this module for the URL.
"""

import re
import string
from dataclasses import dataclass
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

PLACEHOLDERS = ("code", "url", "path")

# RFC 3986 unreserved characters: a name that needs no encoding in any shop's query parser.
_PARAMETER_NAME = re.compile(r"[A-Za-z0-9._~-]{1,100}")


class CouponLinkError(ValueError):
    """A coupon link setting that cannot make a URL; the message says why."""


@dataclass(frozen=True)
class CouponLink:
    """One of `parameter` and `template` is set (see `coupon_link`)."""

    parameter: str | None = None
    template: str | None = None

    def apply(self, checkout_url: str, code: str) -> str:
        """Where the buyer goes instead of `checkout_url`: the same place, with `code`."""
        if self.template is not None:
            return _fill(self.template, checkout_url, code)
        assert self.parameter is not None
        return _with_parameter(checkout_url, self.parameter, code)


def coupon_link(parameter: str | None, template: str | None) -> CouponLink | None:
    """The rule the two settings give (None: links carry no code); CouponLinkError when both
    are set or the one set cannot make a URL, so that a process refuses to start with it."""
    parameter, template = parameter or None, template or None
    if parameter is not None and template is not None:
        raise CouponLinkError("set a coupon link parameter or a coupon link template, not both")
    if parameter is not None:
        if not _PARAMETER_NAME.fullmatch(parameter):
            raise CouponLinkError(
                f"coupon link parameter {parameter!r}: letters, digits, '.', '_', '~' and '-' only"
            )
        return CouponLink(parameter=parameter)
    if template is not None:
        _check_template(template)
        return CouponLink(template=template)
    return None


def _check_template(template: str) -> None:
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError as err:
        raise CouponLinkError(f"coupon link template {template!r}: {err}") from None
    for name, spec, conversion in fields:
        if name not in PLACEHOLDERS or spec or conversion:
            raise CouponLinkError(
                f"coupon link template {template!r}: unknown placeholder {{{name}}} "
                f"(it may use {', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
            )
    if "code" not in {name for name, _, _ in fields}:
        raise CouponLinkError(f"coupon link template {template!r}: it must hold {{code}}")
    sample = urlsplit(_fill(template, "https://shop.example/checkout/1?key=a#b", "CODE-1"))
    if sample.scheme not in ("http", "https") or not sample.netloc:
        raise CouponLinkError(f"coupon link template {template!r}: must be an absolute http(s) URL")


def _fill(template: str, checkout_url: str, code: str) -> str:
    parts = urlsplit(checkout_url)
    path = urlunsplit(("", "", parts.path or "/", parts.query, parts.fragment))
    return template.format(
        code=quote(code, safe=""),
        url=quote(checkout_url, safe=""),
        # Slashes stay readable (`?redirect=/checkouts/1`); `?`, `&` and `#` are encoded, so
        # the checkout's own query and fragment stay inside the one value.
        path=quote(path, safe="/"),
    )


def _with_parameter(checkout_url: str, parameter: str, code: str) -> str:
    parts = urlsplit(checkout_url)
    # The rest of the query is kept byte for byte (re-encoding could change what the shop
    # reads); a code the URL already names is replaced, so the buyer gets this step's one.
    kept = [
        pair
        for pair in parts.query.split("&")
        if pair and unquote_plus(pair.partition("=")[0]) != parameter
    ]
    kept.append(f"{parameter}={quote(code, safe='')}")
    return urlunsplit(parts._replace(query="&".join(kept)))
