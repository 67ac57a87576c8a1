"""The email path alone: the engine's send path against raw aiosmtplib, in one run.

    .venv/bin/python -m bench.smtp [--emails 2000] [--connections N] [--json FILE]

The embedded SMTP server runs in a child process (as a relay would), and N recovery emails go to it
three ways:

  engine      what the email activity does minus the store: resolve the template language,
              build the checkout's context (Babel money), sign the recovery and unsubscribe links,
              render the template, build the MIME message and send it through the engine's
              `SmtpPool` on its configured number of persistent connections;
  raw pool    raw aiosmtplib on the same number of persistent connections, each sending its
              share one after another, sending the same messages already flattened to bytes;
  one per msg one new aiosmtplib connection per message (connect, EHLO, send, QUIT), as many
              at once as there are connections above.

Each run sends all N, in --rounds slices (default 10) taken in turn, the order rotating each
round, so that other load on the machine falls on every run alike. With --with-store, a fourth run
calls the whole activity: the store's claim and confirmation (SQLite) around the same send.

It prints emails/s, this process's CPU per email and the SMTP server's (from /proc), and the
ratios engine / raw pool (target >= 0.9) and engine / one per message (target >= 3). Every
message must arrive: the Maildir the server writes is counted after each slice.
"""

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import aiosmtplib

from activities.email import EmailActivities
from activities.email_message import Sender, flatten_message, message_id_for
from activities.rendering import TemplateRenderer
from activities.smtp_pool import SmtpPool
from bench.support import Figure, write_figures
from bench.throughput import _start_smtp_process
from domain.checkout import AbandonedCheckout, parse_checkout
from domain.flow import step_key, workflow_id_for
from domain.policy import EmailStep
from domain.shops import DEFAULT_SHOP
from domain.steps import EmailStepRequest
from store.sql import SqlStore
from tests.ports import free_port
from tests.support import sample_checkout_data
from workers.link_secret import link_signer_for
from workers.process_exit import leave
from workers.settings import Settings

TARGET_VS_RAW = 0.9
TARGET_VS_ONE_PER_MESSAGE = 3.0
HOST = "127.0.0.1"
SENT_AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
STEP = EmailStep(action="email", template="reminder", delay="1h")
# The worker's default: `CHECKOUT_RECOVERY_SMTP_POOL_SIZE`.
DEFAULT_CONNECTIONS: int = Settings.model_fields["smtp_pool_size"].default


@dataclass(frozen=True)
class Email:
    checkout: AbandonedCheckout
    request: EmailStepRequest
    message_id: str


@dataclass
class RunFigures:
    name: str
    emails: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    server_cpu_seconds: float | None = 0.0

    @property
    def emails_per_second(self) -> float:
        return self.emails / self.seconds

    @property
    def cpu_ms_per_email(self) -> float:
        """CPU of this process (rendering, MIME, SMTP client) per email."""
        return self.cpu_seconds * 1000 / self.emails

    @property
    def server_cpu_ms_per_email(self) -> float | None:
        """CPU of the SMTP server's process per email (Linux only)."""
        if self.server_cpu_seconds is None:
            return None
        return self.server_cpu_seconds * 1000 / self.emails


def _checkout(index: int) -> AbandonedCheckout:
    data = sample_checkout_data(
        checkoutId=f"co-bench-{index}",
        buyerInfo={"email": f"buyer{index}@example.com", "visitorId": f"visitor-{index}"},
        contactDetails={"firstName": "Ada", "lastName": f"Lovelace {index}"},
        checkoutUrl=f"https://shop.example/checkout?id={index}",
    )
    checkout_id = f"bench-{index}"
    return parse_checkout(data).model_copy(update={"id": checkout_id, "created_date": SENT_AT})


def _emails(count: int, sender: Sender) -> list[Email]:
    emails = []
    for index in range(count):
        checkout = _checkout(index)
        assert checkout.id is not None
        workflow_id = workflow_id_for(checkout.id)
        request = EmailStepRequest(
            checkout_id=checkout.id,
            workflow_id=workflow_id,
            step_index=0,
            key=step_key(workflow_id, 0),
            at=SENT_AT,
            step=STEP,
        )
        emails.append(Email(checkout, request, message_id_for(request.key, sender.id_domain)))
    return emails


def _activities(settings: Settings, store: SqlStore, pool: SmtpPool) -> EmailActivities:
    """Wired as `workers.worker.open_worker` wires them (signed links; no coupon in the step)."""
    return EmailActivities(
        store,
        pool,
        TemplateRenderer(default_language=settings.default_language),
        Sender(settings.mail_from),
        settings.shop_name,
        links=link_signer_for(settings),
        unsubscribe_mailbox=settings.unsubscribe_mailbox,
    )


SendOne = Callable[[int], Awaitable[None]]


def _server_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU of a process so far, from /proc (None where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _in_lanes(
    figures: RunFigures, indices: list[int], lanes: int, send_one: SendOne, server_pid: int
) -> None:
    """`lanes` tasks at once, each sending its share of `indices` one after another; the time,
    this process's CPU and the server's are added to `figures`."""

    async def lane(first: int) -> None:
        for index in indices[first::lanes]:
            await send_one(index)

    server_cpu = _server_cpu_seconds(server_pid)
    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(lane(n) for n in range(min(lanes, len(indices)))))
    figures.seconds += time.perf_counter() - started
    figures.cpu_seconds += time.process_time() - cpu
    figures.emails += len(indices)
    server_after = _server_cpu_seconds(server_pid)
    if server_cpu is None or server_after is None or figures.server_cpu_seconds is None:
        figures.server_cpu_seconds = None
    else:
        figures.server_cpu_seconds += server_after - server_cpu


def _received(mail_dir: Path) -> int:
    return sum(1 for sub in ("new", "cur") for _ in (mail_dir / sub).glob("*"))


def _expect(mail_dir: Path, expected: int, after: str) -> None:
    received = _received(mail_dir)
    if received != expected:
        raise SystemExit(f"after {after}: {received} emails in the Maildir, {expected} expected")


Raw = list[tuple[bytes, str, str]]


class _RawPool:
    """Raw aiosmtplib on `lanes` persistent connections: lane n always uses connection n."""

    def __init__(self, port: int, lanes: int, messages: Raw) -> None:
        self._clients = [aiosmtplib.SMTP(hostname=HOST, port=port) for _ in range(lanes)]
        self._messages = messages
        self._lanes = lanes

    async def send_one(self, index: int) -> None:
        raw, sender, recipient = self._messages[index]
        # The same lane sends every lanes-th index (see _in_lanes), so one connection each.
        client = self._clients[index % self._lanes]
        if not client.is_connected:
            await client.connect()
        # The options the engine's pool sends (aiosmtpd offers 8BITMIME).
        await client.sendmail(sender, [recipient], raw, mail_options=["BODY=8BITMIME"])

    async def close(self) -> None:
        for client in self._clients:
            if client.is_connected:
                await client.quit()


class _OnePerMessage:
    """A new aiosmtplib connection per message: connect, EHLO, MAIL, RCPT, DATA, QUIT."""

    def __init__(self, port: int, messages: Raw) -> None:
        self._port = port
        self._messages = messages

    async def send_one(self, index: int) -> None:
        raw, sender, recipient = self._messages[index]
        async with aiosmtplib.SMTP(hostname=HOST, port=self._port) as client:
            await client.sendmail(sender, [recipient], raw, mail_options=["BODY=8BITMIME"])

    async def close(self) -> None:
        pass


class _Engine:
    """The email activity's send path on the engine's pool: without the store, `_compose` and
    the pool's send (what the activity does once the store let it send); with it, the whole
    activity."""

    def __init__(
        self, settings: Settings, store: SqlStore, emails: list[Email], *, with_store: bool
    ) -> None:
        self._pool = SmtpPool(settings.smtp_config())
        self._email = _activities(settings, store, self._pool)
        self._sender = Sender(settings.mail_from).address
        self._emails = emails
        self._with_store = with_store

    async def send_one(self, index: int) -> None:
        item = self._emails[index]
        if self._with_store:
            await self._email.send_recovery_email(item.request)
            return
        address = item.checkout.buyer_info.email
        assert address is not None
        message = await self._email._compose(
            item.request, item.checkout, address, item.message_id, shop_id=DEFAULT_SHOP
        )
        await self._pool.send(message, self._sender, address)

    async def close(self) -> None:
        await self._pool.close()


class _Method(Protocol):
    async def send_one(self, index: int) -> None: ...

    async def close(self) -> None: ...


async def _prebuilt(settings: Settings, store: SqlStore, emails: list[Email]) -> Raw:
    """What the engine sends, flattened once beforehand for the raw runs. Rendering every email
    here also warms the templates and Babel for the engine's runs."""
    composing = _activities(settings, store, SmtpPool(settings.smtp_config()))
    sender = Sender(settings.mail_from).address
    raw: Raw = []
    for item in emails:
        address = item.checkout.buyer_info.email
        assert address is not None
        message = await composing._compose(
            item.request, item.checkout, address, item.message_id, shop_id=DEFAULT_SHOP
        )
        raw.append((flatten_message(message), sender, address))
    return raw


async def _measure(
    methods: dict[str, _Method],
    count: int,
    lanes: int,
    rounds: int,
    server_pid: int,
    mail_dir: Path,
    sent: int,
) -> dict[str, RunFigures]:
    """Each method sends all `count` emails, in `rounds` slices taken in turn (the order
    rotating each round), so that other load on the machine falls on every method alike."""
    figures = {name: RunFigures(name) for name in methods}
    names = list(methods)
    for r in range(rounds):
        indices = list(range(r * count // rounds, (r + 1) * count // rounds))
        for name in names[r % len(names) :] + names[: r % len(names)]:
            await _in_lanes(figures[name], indices, lanes, methods[name].send_one, server_pid)
            sent += len(indices)
            _expect(mail_dir, sent, f"{name}, round {r + 1}")
    for method in methods.values():
        await method.close()
    return figures


def _print_table(runs: list[RunFigures]) -> None:
    print(
        f"{'run':<13} {'emails':>6} {'seconds':>8} {'emails/s':>9} {'cpu ms/email':>13}"
        f" {'server cpu ms/email':>20}"
    )
    for f in runs:
        server = f.server_cpu_ms_per_email
        print(
            f"{f.name:<13} {f.emails:>6} {f.seconds:>8.2f} {f.emails_per_second:>9.1f}"
            f" {f.cpu_ms_per_email:>13.2f} {'-' if server is None else f'{server:.2f}':>20}"
        )


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emails", type=int, default=2000)
    parser.add_argument(
        "--connections",
        type=int,
        default=DEFAULT_CONNECTIONS,
        help="persistent connections (the pool's size), and senders at once in every run",
    )
    parser.add_argument("--rounds", type=int, default=10, help="slices each run is taken in")
    parser.add_argument(
        "--with-store", action="store_true", help="also the whole activity, with its store"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    count, lanes, rounds = args.emails, args.connections, max(1, min(args.rounds, args.emails))

    with tempfile.TemporaryDirectory(prefix="bench-smtp-") as tmp:
        data_dir = Path(tmp)
        mail_dir = data_dir / "mail"
        port = free_port()
        settings = Settings(data_dir=data_dir, smtp_host=HOST, smtp_port=port, smtp_pool_size=lanes)
        store = SqlStore.from_url(settings.store_url)
        await store.create_schema()
        emails = _emails(count, Sender(settings.mail_from))
        messages = await _prebuilt(settings, store, emails)
        if args.with_store:
            for item in emails:
                await store.save_reported(item.checkout, SENT_AT)
        smtp = await _start_smtp_process(port, data_dir)
        try:
            print(
                f"bench: {count} emails, {lanes} connections, {rounds} rounds, SMTP server on "
                f"port {port}",
                file=sys.stderr,
            )
            # The server's first messages (its imports, the Maildir's folders) count for none.
            warmup, sent = _RawPool(port, lanes, messages), min(2 * lanes, count)
            await _in_lanes(
                RunFigures("warm-up"), list(range(sent)), lanes, warmup.send_one, smtp.pid
            )
            await warmup.close()
            _expect(mail_dir, sent, "the warm-up")
            methods: dict[str, _Method] = {
                "engine": _Engine(settings, store, emails, with_store=False),
                "raw pool": _RawPool(port, lanes, messages),
                "one per msg": _OnePerMessage(port, messages),
            }
            if args.with_store:
                methods["engine+store"] = _Engine(settings, store, emails, with_store=True)
            figures = await _measure(methods, count, lanes, rounds, smtp.pid, mail_dir, sent)
            sent += count * len(methods)
        finally:
            smtp.terminate()
            await smtp.wait()
            await store.close()
    print(f"  mailbox received all {sent} emails", file=sys.stderr)

    engine, raw, one_each = figures["engine"], figures["raw pool"], figures["one per msg"]
    vs_raw = engine.emails_per_second / raw.emails_per_second
    vs_one = engine.emails_per_second / one_each.emails_per_second
    _print_table(list(figures.values()))
    print(f"engine / raw pool:    {vs_raw:.3f} (target ≥ {TARGET_VS_RAW})")
    print(f"engine / one per msg: {vs_one:.3f} (target ≥ {TARGET_VS_ONE_PER_MESSAGE:g})")
    what = f"{count} emails, {lanes} connections"
    write_figures(
        args.json,
        [
            Figure(
                "smtp",
                f"engine send path vs raw pool ({what})",
                engine.emails_per_second,
                "emails/s",
                raw.emails_per_second,
                vs_raw,
                f"≥ {TARGET_VS_RAW}",
            ),
            Figure(
                "smtp",
                f"engine send path vs one connection per email ({what})",
                engine.emails_per_second,
                "emails/s",
                one_each.emails_per_second,
                vs_one,
                f"≥ {TARGET_VS_ONE_PER_MESSAGE:g}",
            ),
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
    leave(0)  # workers/process_exit.py: the Temporal core's threads and Python's teardown
