"""The secrets every process of a deployment must agree on: from the environment, or a file.

Each comes from its CHECKOUT_RECOVERY_ variable when set. Without it, the process falls back to a
secret generated once into the data folder (readable by its owner only): right for `./run dev` and
for processes sharing one folder, wrong for replicas on separate machines, which would each make a
different one. The fallback therefore logs a warning at start that names the variable, and the
README's Production section lists the variables a multi-process deployment sets.

What goes wrong without them: links signed by one worker are refused by an API with another
secret; a dashboard session from one API is not valid on another; a subscriber secret sealed by
one API cannot be opened by a worker to sign the delivery (it retries until the keys agree).
"""

import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path

from codec.payload_codec import parse_codec_keys
from domain.links import LinkSigner
from store.secret_box import SecretBox, derived_key
from workers.settings import Settings

logger = logging.getLogger(__name__)

LINK_SECRET_FILE = "link-signing-secret"
DASHBOARD_SECRET_FILE = "dashboard-session-secret"
WEBHOOK_KEY_FILE = "webhook-secret-key"

LINK_SECRET_ENV = "CHECKOUT_RECOVERY_LINK_SIGNING_SECRET"
DASHBOARD_SECRET_ENV = "CHECKOUT_RECOVERY_DASHBOARD_SESSION_SECRET"
WEBHOOK_KEYS_ENV = "CHECKOUT_RECOVERY_WEBHOOK_SECRET_KEYS"
CODEC_KEYS_ENV = "CHECKOUT_RECOVERY_CODEC_KEYS"
SHARED_SECRET_VARIABLES = (LINK_SECRET_ENV, DASHBOARD_SECRET_ENV, WEBHOOK_KEYS_ENV, CODEC_KEYS_ENV)
"""What a deployment of several API and worker processes sets, the same value in each (the codec
keys only when payloads are encrypted)."""


def link_signer_for(settings: Settings) -> LinkSigner:
    """Signs with CHECKOUT_RECOVERY_LINK_SIGNING_SECRET; without it, with a secret generated once
    into the data folder. The worker (which writes links into emails) and the API (which checks
    them) must share the secret: set the variable whenever they run on different machines."""
    configured = settings.link_signing_secret
    secret = (
        configured.get_secret_value()
        if configured
        else _fallback(settings.data_dir, LINK_SECRET_FILE, LINK_SECRET_ENV)
    )
    return LinkSigner(secret, settings.public_url, timedelta(days=settings.link_ttl_days))


def dashboard_secret(settings: Settings) -> str:
    """Encrypts dashboard sessions: CHECKOUT_RECOVERY_DASHBOARD_SESSION_SECRET, or one generated
    into the data folder (API processes sharing the folder share the sessions)."""
    configured = settings.dashboard_session_secret
    if configured:
        return configured.get_secret_value()
    return _fallback(settings.data_dir, DASHBOARD_SECRET_FILE, DASHBOARD_SECRET_ENV)


LOCAL_KEY_ID = "local"
"""The id of the webhook-secret key derived from the data folder's secret file."""


def webhook_secret_box(settings: Settings) -> SecretBox:
    """Seals subscribers' signing secrets in the store: the keys of
    CHECKOUT_RECOVERY_WEBHOOK_SECRET_KEYS ("id:base64key", comma-separated, the first seals), or
    one derived from a secret generated into the data folder."""
    configured = settings.webhook_secret_keys
    if configured:
        keys: dict[str, bytes] = dict(parse_codec_keys(configured.get_secret_value()))
        # Secrets sealed before the variable was set used the data folder's key: it still opens
        # them (the configured keys seal), so setting the variable later loses no subscription.
        # (The box tells keys apart by fingerprint; the name only has to differ from theirs.)
        if (settings.data_dir / WEBHOOK_KEY_FILE).exists():
            text = local_secret(settings.data_dir, WEBHOOK_KEY_FILE)
            keys = {
                **keys,
                f"{LOCAL_KEY_ID} (data folder)": derived_key(text, "webhook-secret-key"),
            }
        return SecretBox(keys, WEBHOOK_KEYS_ENV)
    text = _fallback(settings.data_dir, WEBHOOK_KEY_FILE, WEBHOOK_KEYS_ENV)
    return SecretBox({LOCAL_KEY_ID: derived_key(text, "webhook-secret-key")}, WEBHOOK_KEYS_ENV)


_warned: set[Path] = set()


def _fallback(data_dir: Path, name: str, variable: str) -> str:
    """The secret in the data folder, with a warning naming `variable` (once per process)."""
    if data_dir / name not in _warned:
        _warned.add(data_dir / name)
        logger.warning(
            "%s is not set: using the secret kept in %s. Every API and worker process must "
            "share that folder or set %s to one value",
            variable,
            data_dir / name,
            variable,
        )
    return local_secret(data_dir, name)


def local_secret(data_dir: Path, name: str) -> str:
    """The secret in `data_dir/name`, generated on first use."""
    path = data_dir / name
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # Written whole to a file of its own, then linked into place: link() fails when the name
        # exists, so of two processes starting together one wins and the other reads its
        # secret, never a half-written file. Readable by its owner only.
        draft = data_dir / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        else:
            logger.info("Generated %s in %s", name, data_dir)
        finally:
            draft.unlink()
    return path.read_text().strip()
