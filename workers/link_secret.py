"""Secrets the services generate for themselves: the recovery-link signer's and the dashboard's.

Kept in the data folder, made once, readable by their owner only; every process sharing the folder
shares them.
"""

import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path

from domain.links import LinkSigner
from workers.settings import Settings

logger = logging.getLogger(__name__)

LINK_SECRET_FILE = "link-signing-secret"
DASHBOARD_SECRET_FILE = "dashboard-session-secret"


def link_signer_for(settings: Settings) -> LinkSigner:
    """Signs with CHECKOUT_RECOVERY_LINK_SIGNING_SECRET; without it, with a secret generated once
    into the data folder. The worker (which writes links into emails) and the API (which checks
    them) must share the secret: set the variable whenever they run on different machines."""
    configured = settings.link_signing_secret
    secret = (
        configured.get_secret_value()
        if configured
        else local_secret(settings.data_dir, LINK_SECRET_FILE)
    )
    return LinkSigner(secret, settings.public_url, timedelta(days=settings.link_ttl_days))


def dashboard_secret(settings: Settings) -> str:
    """Encrypts dashboard sessions; API processes sharing the data folder share the sessions."""
    return local_secret(settings.data_dir, DASHBOARD_SECRET_FILE)


def local_secret(data_dir: Path, name: str) -> str:
    """The secret in `data_dir/name`, generated on first use."""
    path = data_dir / name
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # Created readable by its owner only; O_EXCL keeps two starting processes from both
        # writing one.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_urlsafe(32))
            logger.info("Generated %s in %s", name, data_dir)
    return path.read_text().strip()
