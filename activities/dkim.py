"""DKIM signing of a recovery email, for relays that do not sign: relaxed/relaxed, rsa-sha256,
over the headers of domain.dkim.SIGNED_HEADERS that the message has.

The signature is computed over the exact bytes the relay receives (the SMTP pool signs what it is
about to send, once per attempt, after flattening and line-ending normalisation): signing the
MIME object instead would sign bytes a later flattening may write differently.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

import dkim  # type: ignore[import-untyped]  # dkimpy ships no type hints

from domain.dkim import SIGNED_HEADERS, DkimKey, DkimSetting, aligned, check_domain, check_selector

logger = logging.getLogger(__name__)

_SIGNED = {name.lower(): name for name in SIGNED_HEADERS}


@dataclass(frozen=True)
class DkimSigner:
    """One signing identity: d=, s= and the key."""

    domain: str
    selector: str
    key: DkimKey

    def __post_init__(self) -> None:
        check_domain(self.domain)
        check_selector(self.selector)

    def sign(self, data: bytes) -> bytes:
        """`data` (a whole message, CRLF line endings) with its DKIM-Signature header first."""
        headers, _ = dkim.rfc822_parse(data)
        present = {name.decode("ascii", "replace").lower() for name, _ in headers}
        include = [name.encode() for low, name in _SIGNED.items() if low in present]
        signature: bytes = dkim.sign(
            data,
            self.selector.encode(),
            self.domain.encode(),
            self.key.pem.encode(),
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=b"rsa-sha256",
            include_headers=include,
            linesep=b"\r\n",
        )
        return signature + data


KeyOpener = Callable[[DkimSetting], DkimKey]
"""The private key a shop's sealed setting holds (store.shops.open_dkim with the process's box)."""


def signer_for(
    shop_dkim: DkimSetting | None,
    mail_from: str,
    deployment: DkimSigner | None,
    open_key: KeyOpener,
) -> DkimSigner | None:
    """Who signs mail from `mail_from`: the shop's own identity when it has one (its alignment
    was checked when it was set), else the deployment's when its domain aligns with this From
    address, else nobody: a signature whose d= does not align earns nothing under DMARC."""
    if shop_dkim is not None:
        return DkimSigner(shop_dkim.domain, shop_dkim.selector, open_key(shop_dkim))
    if deployment is None:
        return None
    domain = mail_from.rpartition("@")[2].rstrip(">").strip()
    if aligned(deployment.domain, domain):
        return deployment
    logger.warning(
        "Mail from %s goes unsigned: the deployment's DKIM domain %s does not align with it "
        "(give the shop its own DKIM key)",
        domain,
        deployment.domain,
    )
    return None
