"""Real parts for the tests: an SMTP server on loopback, a SQLite store, Temporal servers, and
`RunningStack.running`, the one way a suite starts a whole running service out of them."""

import asyncio
import contextlib
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx
from aiosmtpd.controller import Controller
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from devstack.mailbox import EmbeddedSmtpServer
from domain.access import Scope
from domain.checkout import AbandonedCheckout, parse_checkout
from domain.flow import SEARCH_ATTRIBUTES
from domain.policy import RecoveryPolicy
from service.checkouts import CheckoutService
from store.api_keys import ApiKeyStore
from store.engine_policy import EnginePolicyStore
from store.sql import SqlStore
from tests.ports import free_port
from workers.api_server import build_app, serving
from workers.policy_files import load_policy
from workers.settings import Settings
from workers.worker import open_worker

BIN_DIR = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


@dataclass
class RecordingSmtpHandler:
    """Accepts mail like a relay would, keeps it, and misbehaves on request."""

    messages: list[EmailMessage] = field(default_factory=list)
    rejected_recipients: set[str] = field(default_factory=set)
    """Addresses answered with 550 at RCPT, as for a mailbox that does not exist."""
    refuse_data: int = 0
    """How many coming DATA commands get a 451 (temporarily unavailable) before one is accepted."""
    refusals: int = 0
    data_delay: float = 0.0
    """Seconds each DATA command takes, to keep a send in flight."""
    data_started: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.rejected_recipients:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_started += 1
        await asyncio.sleep(self.data_delay)
        with self.lock:
            if self.refuse_data > 0:
                self.refuse_data -= 1
                self.refusals += 1
                return "451 4.3.0 Mail server temporarily busy"
            parsed = message_from_bytes(
                envelope.original_content or envelope.content, policy=policy.default
            )
            assert isinstance(parsed, EmailMessage)
            self.messages.append(parsed)
        return "250 Message accepted"


@dataclass
class SmtpServer:
    handler: RecordingSmtpHandler
    port: int


@contextlib.contextmanager
def smtp_server() -> Any:
    handler = RecordingSmtpHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(handler, port)
    finally:
        controller.stop()


def engine_settings(smtp_port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "task_queue": f"test-{uuid.uuid4()}",
        "mail_from": "Test Shop <recovery@shop.test>",
        "shop_name": "Test Shop",
        "shutdown_grace_seconds": 2.0,
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def running_engine(
    client: Client, store: SqlStore, settings: Settings
) -> AsyncIterator[CheckoutService]:
    """A worker polling `settings.task_queue`, and the service that starts flows on it."""
    async with open_worker(client, settings, store) as worker, worker:
        yield CheckoutService(client, store, settings.task_queue)


@dataclass(frozen=True)
class ServedApi:
    """The HTTP service of a stack started with `serve=True`."""

    http: httpx.AsyncClient
    """A client on the service's public URL."""
    manage_key: str
    read_key: str


@dataclass
class RunningStack:
    """A worker polling `settings.task_queue`, the service that starts flows on it, and the parts
    asked of `running`. A suite's own stack is a subclass that adds methods, not fields."""

    client: Client
    store: SqlStore
    settings: Settings
    service: CheckoutService
    policy: RecoveryPolicy
    """What the flows are started with (and the API serves)."""
    recording_smtp: SmtpServer | None
    """Where the mail goes, unless it goes to `mail_folder`."""
    mail_folder: Path | None
    api: ServedApi | None

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls,
        client: Client,
        *,
        store: SqlStore | None = None,
        smtp: SmtpServer | None = None,
        maildir: Path | None = None,
        data_dir: Path | None = None,
        policy: RecoveryPolicy | str | None = None,
        serve: bool = False,
        mailbox_page: bool = False,
        key_names: str = "test",
        **settings: Any,
    ) -> AsyncIterator[Self]:
        """Everything stops again, in reverse order, when the block ends.

        `store`: None opens the settings' own (in `data_dir`), with its schema, for the stack.
        `smtp`: the recording server to send to; None starts one for the stack. `maildir`: send
        to the dev stack's embedded SMTP server instead, which keeps the mail in that folder.
        `policy`: a policy, or the name or file the settings (and so the CLI) take; None: the
        settings' policy. `serve`: the HTTP service on a loopback port, with a client on it and
        a manager's and a reader's API key (named "`key_names` manager" and "... reader");
        `mailbox_page` serves the dev stack's mailbox page of `maildir` too. `settings`:
        overrides of `engine_settings`.
        """
        assert smtp is None or maildir is None, "mail goes to a recording server or to a Maildir"
        assert maildir is not None or not mailbox_page, "the mailbox page shows a Maildir"
        if data_dir is not None:
            settings["data_dir"] = data_dir
        if isinstance(policy, str):
            settings["policy"] = policy
        if serve:
            port = free_port()
            settings.update(api_port=port, public_url=f"http://127.0.0.1:{port}")
        async with contextlib.AsyncExitStack() as parts:
            if maildir is not None:
                smtp_port = free_port()
                embedded = EmbeddedSmtpServer("127.0.0.1", smtp_port, maildir)
                embedded.start()
                parts.callback(embedded.stop)
            else:
                smtp = smtp or parts.enter_context(smtp_server())
                smtp_port = smtp.port
            config = engine_settings(smtp_port, **settings)
            if store is None:
                store = SqlStore.from_url(config.store_url)
                parts.push_async_callback(store.close)
                await store.create_schema()
            service = await parts.enter_async_context(running_engine(client, store, config))
            served = policy if isinstance(policy, RecoveryPolicy) else load_policy(config.policy)
            if isinstance(policy, RecoveryPolicy):
                # The stack's engine runs this policy, not its settings' one: what the API gives
                # new checkouts (service.reporting_policy), as a worker configured so publishes.
                await EnginePolicyStore(store.engine).publish(served, served.name)
            api = None
            if serve:
                mailbox = maildir if mailbox_page else None
                api = await parts.enter_async_context(
                    _serving_api(config, service, store, served, mailbox, key_names)
                )
            yield cls(client, store, config, service, served, smtp, maildir, api)

    @property
    def smtp(self) -> SmtpServer:
        return _started(self.recording_smtp, "a recording SMTP server (it has a Maildir)")

    @property
    def maildir(self) -> Path:
        return _started(self.mail_folder, "maildir")

    @property
    def base_url(self) -> str:
        return self.settings.public_url

    @property
    def http(self) -> httpx.AsyncClient:
        return _started(self.api, "serve").http

    @property
    def manage_key(self) -> str:
        return _started(self.api, "serve").manage_key

    @property
    def read_key(self) -> str:
        return _started(self.api, "serve").read_key

    def as_manager(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.manage_key}"}

    def as_reader(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.read_key}"}


@contextlib.asynccontextmanager
async def _serving_api(
    settings: Settings,
    service: CheckoutService,
    store: SqlStore,
    policy: RecoveryPolicy,
    mailbox: Path | None,
    key_names: str,
) -> AsyncIterator[ServedApi]:
    keys = ApiKeyStore(store.engine)
    _, manage_key = await keys.create(f"{key_names} manager", frozenset({Scope.MANAGE}))
    _, read_key = await keys.create(f"{key_names} reader", frozenset({Scope.READ}))
    app = build_app(settings, service, store, policy, mailbox)
    async with (
        serving(app, settings.api_host, settings.api_port),
        httpx.AsyncClient(base_url=settings.public_url, timeout=30) as http,
    ):
        yield ServedApi(http, manage_key, read_key)


def _started(part: T | None, option: str) -> T:
    assert part is not None, f"this stack was started without {option}"
    return part


async def start_time_skipping() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(BIN_DIR / "temporal-test-server"),
    )


async def start_dev_server() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(BIN_DIR / "temporal"),
        ui=False,
        # Ours, outside the ephemeral range (tests/ports.py says why).
        port=free_port(),
        # As the dev stack does: flows publish their status and step when these exist.
        search_attributes=SEARCH_ATTRIBUTES,
    )


def sample_checkout(**overrides: Any) -> AbandonedCheckout:
    return parse_checkout(sample_checkout_data(**overrides))


def sample_checkout_data(**overrides: Any) -> dict[str, Any]:
    """A report as a shop's service sends it, in the JSON spelling; a fresh checkoutId each time."""
    data: dict[str, Any] = {
        "checkoutId": f"co-{uuid.uuid4()}",
        "buyerInfo": {"email": "ada@example.com", "visitorId": "visitor-1"},
        "buyerLanguage": "en",
        "contactDetails": {"firstName": "Ada", "lastName": "Lovelace"},
        "currency": "EUR",
        "totalPrice": {"amount": "89.90", "formattedAmount": "€89.90"},
        "lineItems": [
            {
                "name": "Linen shirt",
                "quantity": 2,
                "price": {"amount": "30.00", "formattedAmount": "€30.00"},
            },
            {
                "name": "Canvas tote",
                "quantity": 1,
                "price": {"amount": "24.00", "formattedAmount": "€24.00"},
            },
        ],
        "checkoutUrl": "https://shop.example/checkout?id=42",
    }
    data.update(overrides)
    return data


async def eventually(
    probe: Callable[[], Awaitable[T | None]], timeout: float = 30.0, what: str = ""
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}")
        await asyncio.sleep(0.1)


def body_text(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None, f"no text/{subtype} part"
    content = part.get_content()
    assert isinstance(content, str)
    return content


def seconds_between(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def default_policy_any_hour() -> RecoveryPolicy:
    """The shipped default policy without its send window: scenarios that check exact due times
    must not depend on the hour the suite runs at (send windows have scenarios of their own)."""
    return load_policy("default").model_copy(update={"send_window": None})
