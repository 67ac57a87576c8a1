"""DKIM test material: RSA keys made for the test, the DNS answer a receiver would get for one,
and an SMTP relay on loopback that keeps the exact bytes it received (a signature is checked
over those, never over a re-serialised parse)."""

import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from temporalio.testing import WorkflowEnvironment

from domain.dkim import DkimKey, read_private_key, record_name
from store.sql import SqlStore
from tests.api.stack import Stack, running_stack
from tests.ports import free_port
from tests.support import SmtpServer


def new_key_pem(bits: int = 2048) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="session")
def deployment_pem() -> bytes:
    return new_key_pem()


@pytest.fixture(scope="session")
def shop_pem() -> bytes:
    return new_key_pem()


def dns_for(records: dict[str, DkimKey]) -> Callable[..., bytes | None]:
    """A `dnsfunc` for dkim.verify answering the TXT record of each `selector._domainkey.d`."""

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        key = records.get(name.decode().rstrip("."))
        return None if key is None else key.txt_record.encode()

    return lookup


def dns_with(selector: str, domain: str, pem: bytes) -> Callable[..., bytes | None]:
    return dns_for({record_name(selector, domain): read_private_key(pem)})


@dataclass
class RawRelay:
    """Accepts every message and keeps its bytes as they came over the wire."""

    received: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.received.append(envelope.original_content)
        return "250 Message accepted"


@pytest.fixture
def relay() -> Iterator[RawRelay]:
    handler = RawRelay(port=free_port())
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    try:
        yield handler
    finally:
        with contextlib.suppress(Exception):
            controller.stop()


@pytest.fixture
def key_file(tmp_path: Path, deployment_pem: bytes) -> Path:
    path = tmp_path / "dkim.pem"
    path.write_bytes(deployment_pem)
    return path


@pytest.fixture
async def stack(
    dev_server_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer, tmp_path: Path
) -> AsyncIterator[Stack]:
    """The API test stack (tests.api), for the shops routes."""
    async with running_stack(dev_server_env.client, store, smtp, tmp_path) as running:
        yield running
