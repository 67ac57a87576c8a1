"""How to reach the SMTP relay: the settings' view and the pool's, without either importing the
other (settings are wiring; the pool is an activity's part)."""

from dataclasses import dataclass
from enum import StrEnum


class SmtpSecurity(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: SmtpSecurity = SmtpSecurity.NONE
    username: str | None = None
    password: str | None = None
    timeout_seconds: float = 30.0
    pool_size: int = 4

    def __repr__(self) -> str:  # keeps the password out of logs and tracebacks
        return f"SmtpConfig(host={self.host!r}, port={self.port}, security={self.security})"
