"""All configuration, read once from the environment into one typed object.

Our own settings use the CHECKOUT_RECOVERY_ prefix; the Temporal connection uses Temporal's own
variable names, so the same worker runs against a dev server, a self-hosted cluster or Temporal
Cloud.
"""

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from temporalio.service import TLSConfig

from domain.smtp import SmtpConfig, SmtpSecurity


def _temporal(name: str, default: Any = None) -> Any:
    """A field read from Temporal's own variable name (the prefixed spelling works too)."""
    return Field(default=default, validation_alias=AliasChoices(name, f"CHECKOUT_RECOVERY_{name}"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHECKOUT_RECOVERY_", extra="ignore")

    data_dir: Path = Path(".data")
    """Where the dev stack keeps Temporal's SQLite file, the store and the received mail."""
    database_url: str | None = None
    """SQLAlchemy async URL of the store; a SQLite file under data_dir when unset."""
    policy: str = "default"
    """A built-in policy name (default, demo) or the path of a policy TOML file."""
    task_queue: str = "checkout-recovery"

    temporal_address: str = _temporal("TEMPORAL_ADDRESS", "localhost:7233")
    temporal_namespace: str = _temporal("TEMPORAL_NAMESPACE", "default")
    temporal_api_key: SecretStr | None = _temporal("TEMPORAL_API_KEY")
    temporal_tls: bool | None = _temporal("TEMPORAL_TLS")
    temporal_tls_client_cert_path: Path | None = _temporal("TEMPORAL_TLS_CLIENT_CERT_PATH")
    temporal_tls_client_key_path: Path | None = _temporal("TEMPORAL_TLS_CLIENT_KEY_PATH")
    temporal_tls_server_ca_cert_path: Path | None = _temporal("TEMPORAL_TLS_SERVER_CA_CERT_PATH")
    temporal_tls_server_name: str | None = _temporal("TEMPORAL_TLS_SERVER_NAME")
    temporal_ui_url: str = "http://localhost:8233"
    """Base address of the Temporal Web UI, used in links shown to operators and staff."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_security: SmtpSecurity = SmtpSecurity.NONE
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = 30.0
    smtp_pool_size: int = Field(default=8, ge=1, le=100)

    mail_from: str = "Our Shop <recovery@shop.example>"
    shop_name: str = "Our Shop"
    default_language: str = "en"
    notification_signing_secret: SecretStr | None = None

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=1, le=65535)
    public_url: str = "http://localhost:8080"
    """The address buyers and subscribers reach the HTTP service at; recovery links start here."""
    link_signing_secret: SecretStr | None = None
    """Signs recovery links; the dev stack keeps a generated one in data_dir when unset."""
    link_ttl_days: int = Field(default=30, ge=1)
    unsubscribe_mailbox: str | None = None
    """The address of the mailto unsubscribe link; unsubscribe@<the sender's domain> when unset.
    Mail to it must reach whoever handles unsubscribes at the shop."""
    coupon_provider: str | None = None
    """"package.module:factory" of a coupon provider; unset: codes are made and kept here."""
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    """Request bodies larger than this are refused with 413."""
    codec_keys: SecretStr | None = None
    """AES-256-GCM keys for Temporal payloads, "id:base64key" comma-separated; the first encrypts,
    all decrypt (so a key can rotate). Unset: payloads go to Temporal unencrypted."""
    codec_cors_origins: str = "http://localhost:8233"
    """Comma-separated origins (the Temporal Web UI) allowed to call the codec endpoint."""
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)

    max_concurrent_activities: int = Field(default=200, ge=1)
    max_concurrent_workflow_tasks: int = Field(default=200, ge=1)
    max_cached_workflows: int = Field(default=100, ge=0)
    """How many flows the worker keeps in memory between their workflow tasks (0: none). A flow
    not in the cache is replayed from its history on its next task (a timer, a signal): cheap for
    flows that sleep for hours, and it bounds the worker's memory whatever the number of flows
    asleep (about 150 KiB per cached flow, `bench.memory`). Keep it above the number of flows
    busy at once (steps seconds apart), or those replay on every step."""
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    """How long a stopping worker lets running activities finish."""
    handoff_interval_seconds: float = Field(default=1.0, gt=0)
    """How often a worker looks for commands the API or CLI could not hand to Temporal."""
    reconcile_interval_seconds: float = Field(default=300.0, ge=0)
    """How often a worker compares the store with Temporal and repairs them (0: never)."""

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'store.db'}"

    @property
    def workflow_link(self) -> str:
        """Where an operator sees one flow in the Temporal UI; `{workflow_id}` is filled in."""
        base = self.temporal_ui_url.rstrip("/")
        return f"{base}/namespaces/{self.temporal_namespace}/workflows/{{workflow_id}}"

    def smtp_config(self) -> SmtpConfig:
        return SmtpConfig(
            host=self.smtp_host,
            port=self.smtp_port,
            security=self.smtp_security,
            username=self.smtp_username,
            password=self.smtp_password.get_secret_value() if self.smtp_password else None,
            timeout_seconds=self.smtp_timeout_seconds,
            pool_size=self.smtp_pool_size,
        )

    def temporal_tls_config(self) -> TLSConfig | bool:
        files = (
            self.temporal_tls_client_cert_path,
            self.temporal_tls_client_key_path,
            self.temporal_tls_server_ca_cert_path,
        )
        if any(files) or self.temporal_tls_server_name:
            cert, key, ca = (path.read_bytes() if path else None for path in files)
            return TLSConfig(
                client_cert=cert,
                client_private_key=key,
                server_root_ca_cert=ca,
                domain=self.temporal_tls_server_name,
            )
        if self.temporal_tls is not None:
            return self.temporal_tls
        # An API key means a hosted cluster, which always speaks TLS.
        return self.temporal_api_key is not None
