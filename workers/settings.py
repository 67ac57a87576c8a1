"""All configuration, read once from the environment into one typed object.

Our own settings use the CHECKOUT_RECOVERY_ prefix; the Temporal connection uses Temporal's own
variable names, so the same worker runs against a dev server, a self-hosted cluster or Temporal
Cloud.
"""

from pathlib import Path
from typing import Any

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from temporalio.service import TLSConfig

from domain.coupon_link import CouponLink, coupon_link
from domain.dkim import (
    DkimError,
    DkimKey,
    alignment_problem,
    check_domain,
    check_selector,
    read_private_key,
)
from domain.sms import SmsProviderConfig
from domain.smtp import SmtpConfig, SmtpSecurity
from telemetry.logs import LogFormat
from telemetry.tracing import DEFAULT_SERVICE_NAME, TracingConfig


def _temporal(name: str, default: Any = None) -> Any:
    """A field read from Temporal's own variable name (the prefixed spelling works too)."""
    return Field(default=default, validation_alias=AliasChoices(name, f"CHECKOUT_RECOVERY_{name}"))


def _standard(name: str, default: Any = None) -> Any:
    """A field read from a standard variable of another project (OpenTelemetry), alone."""
    return Field(default=default, validation_alias=AliasChoices(name))


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
    dashboard_session_secret: SecretStr | None = None
    """Encrypts dashboard session cookies; a generated one in data_dir when unset. API processes
    that do not share data_dir must all set the same value, or a session works on one only."""
    webhook_secret_keys: SecretStr | None = None
    """AES-256-GCM keys that encrypt subscribers' signing secrets in the store, "id:base64key"
    comma-separated like codec_keys (the first encrypts, all decrypt); a generated one in data_dir
    when unset. Every API and worker process must have the same keys."""
    link_ttl_days: int = Field(default=30, ge=1)
    unsubscribe_mailbox: str | None = None
    """The address of the mailto unsubscribe link; unsubscribe@<the sender's domain> when unset.
    Mail to it must reach whoever handles unsubscribes at the shop."""
    dkim_domain: str | None = None
    """The d= of the DKIM signature the worker adds, for a relay that does not sign: the From
    domain or a parent of it. With dkim_selector and dkim_private_key_file, or none of them."""
    dkim_selector: str | None = None
    """The s=: the public key is the TXT record <selector>._domainkey.<domain>."""
    dkim_private_key_file: Path | None = None
    """The RSA private key (PEM, unencrypted), read at worker start."""
    keep_sent_emails: bool = True
    """Keep a copy of each recovery email as sent (subject, text, HTML), shown on the dashboard
    and erased with its checkout; false: none is kept (copies kept before stay until erased)."""
    coupon_provider: str | None = None
    """"package.module:factory" of a coupon provider; unset: codes are made and kept here."""
    coupon_link_param: str | None = None
    """The query parameter the recovery link adds the step's coupon code in (`discount` gives
    `?discount=CODE`); unset, and no coupon_link_template: the link carries no code."""
    coupon_link_template: str | None = None
    """A URL the recovery link sends a buyer with a coupon to instead, with `{code}`, `{url}`
    and `{path}` (domain.coupon_link); not with coupon_link_param."""
    templates_dir: Path | None = None
    """A folder of the shop's own templates, laid out as the shipped `templates/`; each file
    there replaces the shipped one (activities.template_source)."""
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    """Request bodies larger than this are refused with 413."""
    api_rate_per_second: float = Field(default=1000.0, ge=0)
    """Requests a second each API key may make (a token bucket; 0: unlimited), per API process.
    Generous on purpose: the ingest and query benchmarks send thousands with one key."""
    api_burst: int = Field(default=2000, ge=1)
    """Requests an API key may make at once before api_rate_per_second applies."""
    public_rate_per_second: float = Field(default=10.0, ge=0)
    """Requests a second each client address may make to the signed public routes (recovery
    link, unsubscribe), per API process (0: unlimited)."""
    public_burst: int = Field(default=200, ge=1)
    """Requests a client address may make to the public routes at once."""
    codec_keys: SecretStr | None = None
    """AES-256-GCM keys for Temporal payloads, "id:base64key" comma-separated; the first encrypts,
    all decrypt (so a key can rotate). Unset: payloads go to Temporal unencrypted."""
    codec_cors_origins: str = "http://localhost:8233"
    """Comma-separated origins (the Temporal Web UI) allowed to call the codec endpoint."""
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)

    # The relays' bounce and complaint webhooks (api.feedback): a relay without its settings has
    # no route.
    ses_topic_arns: str | None = None
    """Comma-separated ARNs of the SNS topics SES publishes bounces and complaints to; only
    these are read (any AWS account's topic is signed by SNS too). Unset: no SES route."""
    sendgrid_verification_key: str | None = None
    """The base64 public key SendGrid shows for its signed Event Webhook. Unset: no route."""
    postmark_webhook_user: str | None = None
    """The basic-auth user (and the password below) in Postmark's webhook URL. Unset: no route."""
    postmark_webhook_password: SecretStr | None = None
    feedback_signing_secret: SecretStr | None = None
    """`whsec_...`: signs the generic feedback form as our event webhooks are signed. Unset: no
    generic route."""

    # SMS steps through a Twilio-compatible API (activities.sms_provider): without the SID, token
    # and sender, SMS steps record sms_not_configured.
    sms_api_url: str = "https://api.twilio.com"
    """The provider's base URL (Twilio's, or a compatible provider's)."""
    sms_account_sid: str | None = None
    sms_auth_token: SecretStr | None = None
    """Authenticates the API calls and signs the inbound webhook (POST /sms/v1/inbound)."""
    sms_from: str | None = None
    """The sending number (E.164) or sender id texts come from."""

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
    worker_metrics_address: str = "127.0.0.1:9464"
    """host:port of the worker's Prometheus listener (the SDK's metrics and the engine's); the
    dev stack's one process serves the API's metrics there too. Empty: no listener."""
    api_metrics_address: str = "127.0.0.1:9465"
    """host:port of the API process's own Prometheus listener, apart from the API port (so
    metrics never share the public port or its keys). Empty: no listener."""
    readiness_backlog_seconds: float = Field(default=300.0, gt=0)
    """/readyz and `health` fail when a command has waited this long for Temporal."""

    log_format: LogFormat = LogFormat.TEXT
    """text: one line per record for people; json: one JSON object per line, with the checkout,
    workflow and step a line is about where known."""
    otel_exporter_otlp_endpoint: str | None = _standard("OTEL_EXPORTER_OTLP_ENDPOINT")
    """Set (or the traces endpoint below): traces go there over OTLP/HTTP (+ /v1/traces)."""
    otel_exporter_otlp_traces_endpoint: str | None = _standard("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    otel_service_name: str = _standard("OTEL_SERVICE_NAME", DEFAULT_SERVICE_NAME)
    otel_sdk_disabled: bool = _standard("OTEL_SDK_DISABLED", False)

    # Checked here, so that a process refuses to start with them rather than at a buyer's click
    # (one field at a time, so the message names the variable).
    @field_validator("coupon_link_param")
    @classmethod
    def _coupon_link_param_is_a_name(cls, value: str | None) -> str | None:
        coupon_link(value, None)
        return value

    @field_validator("coupon_link_template")
    @classmethod
    def _coupon_link_template_makes_urls(
        cls, value: str | None, info: ValidationInfo
    ) -> str | None:
        # coupon_link_param comes first, so it is in `info.data` when it was valid.
        coupon_link(info.data.get("coupon_link_param"), value)
        return value

    @model_validator(mode="after")
    def _dkim_all_or_none(self) -> "Settings":
        given = {
            "CHECKOUT_RECOVERY_DKIM_DOMAIN": self.dkim_domain,
            "CHECKOUT_RECOVERY_DKIM_SELECTOR": self.dkim_selector,
            "CHECKOUT_RECOVERY_DKIM_PRIVATE_KEY_FILE": self.dkim_private_key_file,
        }
        missing = [name for name, value in given.items() if not value]
        if len(missing) == len(given):
            return self
        if missing:
            raise ValueError(
                f"DKIM signing needs all three of {', '.join(given)}; missing: {', '.join(missing)}"
            )
        assert self.dkim_domain and self.dkim_selector  # none missing
        for name, check, value in (
            ("DOMAIN", check_domain, self.dkim_domain),
            ("SELECTOR", check_selector, self.dkim_selector),
        ):
            try:
                check(value)
            except DkimError as err:
                raise ValueError(f"CHECKOUT_RECOVERY_DKIM_{name}: {err}") from None
        problem = alignment_problem(self.dkim_domain, self.mail_from)
        if problem is not None:
            raise ValueError(
                f"CHECKOUT_RECOVERY_DKIM_DOMAIN: {problem} (CHECKOUT_RECOVERY_MAIL_FROM)"
            )
        return self

    def dkim_key(self) -> DkimKey | None:
        """The deployment's DKIM key, read from its file; None when DKIM is not configured.
        Raises DkimError naming the variable when the file is missing or holds no usable key."""
        path = self.dkim_private_key_file
        if path is None:
            return None
        try:
            text = path.read_bytes()
        except OSError as err:
            raise DkimError(
                f"CHECKOUT_RECOVERY_DKIM_PRIVATE_KEY_FILE {path}: {err.strerror}"
            ) from None
        try:
            return read_private_key(text)
        except DkimError as err:
            raise DkimError(f"CHECKOUT_RECOVERY_DKIM_PRIVATE_KEY_FILE {path}: {err}") from None

    def coupon_link(self) -> CouponLink | None:
        return coupon_link(self.coupon_link_param, self.coupon_link_template)

    def tracing_config(self) -> TracingConfig:
        return TracingConfig(
            otlp_endpoint=self.otel_exporter_otlp_endpoint or None,
            otlp_traces_endpoint=self.otel_exporter_otlp_traces_endpoint or None,
            service_name=self.otel_service_name or DEFAULT_SERVICE_NAME,
            sdk_disabled=self.otel_sdk_disabled,
        )

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'store.db'}"

    @property
    def workflow_link(self) -> str:
        """Where an operator sees one flow in the Temporal UI; `{workflow_id}` is filled in."""
        base = self.temporal_ui_url.rstrip("/")
        return f"{base}/namespaces/{self.temporal_namespace}/workflows/{{workflow_id}}"

    @property
    def ui_codec_endpoint(self) -> str:
        """The codec endpoint the dev stack gives the Temporal Web UI: the one under the dashboard
        session's path (api.codec_routes.SESSION_CODEC_PATH), so that a UI including
        cross-origin credentials sends the operator's session cookie along."""
        return f"{self.public_url.rstrip('/')}/dashboard/codec"

    def sms_config(self) -> SmsProviderConfig | None:
        """The SMS provider's settings; None unless the SID, token and sender are all set."""
        if not (self.sms_account_sid and self.sms_auth_token and self.sms_from):
            return None
        return SmsProviderConfig(
            base_url=self.sms_api_url,
            account_sid=self.sms_account_sid,
            auth_token=self.sms_auth_token,
            from_number=self.sms_from,
        )

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
