"""The recovery-link signer, from the settings (or a secret kept in the data folder)."""

import logging
import os
import secrets
from datetime import timedelta

from domain.links import LinkSigner
from workers.settings import Settings

logger = logging.getLogger(__name__)

SECRET_FILE = "link-signing-secret"


def link_signer_for(settings: Settings) -> LinkSigner:
    """Signs with CHECKOUT_RECOVERY_LINK_SIGNING_SECRET; without it, with a secret generated once
    into the data folder. The worker (which writes links into emails) and the API (which checks
    them) must share the secret: set the variable whenever they run on different machines."""
    configured = settings.link_signing_secret
    secret = configured.get_secret_value() if configured else _local_secret(settings)
    return LinkSigner(secret, settings.public_url, timedelta(days=settings.link_ttl_days))


def _local_secret(settings: Settings) -> str:
    path = settings.data_dir / SECRET_FILE
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # Created readable by its owner only; O_EXCL keeps two starting processes from both
        # writing one.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_urlsafe(32))
            logger.info("Generated a recovery-link signing secret in %s", path)
    return path.read_text().strip()
