"""Buyer data cannot break or add an email header: through the real email activity, against a
real SMTP server on loopback, the message that arrives has exactly the headers the engine set."""

from datetime import UTC, datetime, timedelta

import pytest
from temporalio.testing import ActivityEnvironment

from activities.email import EmailActivities
from activities.email_message import Sender, header_text
from activities.rendering import TemplateRenderer
from activities.smtp_pool import SmtpPool
from domain.activity import ActivityType
from domain.errors import InvalidInputError
from domain.flow import step_key, workflow_id_for
from domain.links import LinkSigner
from domain.policy import EmailStep
from domain.smtp import SmtpConfig
from domain.steps import EmailStepRequest
from store.sql import SqlStore
from tests.support import SmtpServer, body_text, sample_checkout

SENDER = Sender("Test Shop <recovery@shop.test>")
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
HEADERS = {
    "Content-Type",
    "MIME-Version",
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
}


@pytest.fixture
async def email(store: SqlStore, smtp: SmtpServer):
    pool = SmtpPool(SmtpConfig(host="127.0.0.1", port=smtp.port, pool_size=1))
    links = LinkSigner("test-link-signing-secret", "https://recovery.shop.test", timedelta(days=7))
    yield EmailActivities(store, pool, TemplateRenderer(), SENDER, "Test Shop", links=links)
    await pool.close()


async def _send(email: EmailActivities, store: SqlStore, **contact: str) -> None:
    checkout = sample_checkout(contactDetails=contact).model_copy(
        update={"id": "c-h", "created_date": NOW}
    )
    await store.save_reported(checkout, NOW)
    workflow_id = workflow_id_for("c-h")
    request = EmailStepRequest(
        checkout_id="c-h",
        workflow_id=workflow_id,
        step_index=0,
        key=step_key(workflow_id, 0),
        at=NOW,
        step=EmailStep(action="email", template="reminder", delay="1h"),
    )
    outcome = await ActivityEnvironment().run(email.send_recovery_email, request)
    assert outcome.type == ActivityType.EMAIL_SENT


CONTROL_BREAKERS = ["\r\n", "\n", "\r", "\x85", "\x00", "\x0b", "\r\n\t"]
"""Refused at every edge (a report with them is a 400 or exit 2), so no stored checkout has them."""
SEPARATORS = ["\u2028", "\u2029"]
"""Unicode line and paragraph separators: valid text, accepted in names, and still kept out of
every header by the message builder."""


@pytest.mark.parametrize("breaker", CONTROL_BREAKERS)
def test_control_characters_are_refused_before_they_could_reach_a_header(breaker: str):
    with pytest.raises(InvalidInputError) as refused:
        sample_checkout(contactDetails={"firstName": f"Ada{breaker}Bcc: x@evil"})
    assert "contactDetails.firstName" in str(refused.value)
    # And should such text ever reach the builder (data stored before the rule), it is one line.
    assert header_text(f"Ada{breaker}Bcc: x@evil") == "Ada Bcc: x@evil"


@pytest.mark.parametrize("breaker", SEPARATORS)
async def test_a_first_name_with_a_line_break_gives_one_clean_subject_and_to(
    email, store: SqlStore, smtp: SmtpServer, breaker: str
):
    await _send(email, store, firstName=f"Ada{breaker}Bcc: x@evil", lastName="Lovelace")

    (message,) = smtp.handler.messages
    assert set(message.keys()) == HEADERS
    assert len(message.keys()) == len(HEADERS)
    assert message.get_all("Bcc") is None
    assert message["Subject"] == "Ada Bcc: x@evil, you left something in your cart at Test Shop"
    assert message["To"] == '"Ada Bcc: x@evil Lovelace" <ada@example.com>'
    assert [a.addr_spec for a in message["To"].addresses] == ["ada@example.com"]
    for name in HEADERS:
        value = str(message[name])
        assert not any(c in value for c in "\r\n\x85\u2028\u2029\x00\x0b"), (name, value)
    # The body still greets the buyer by what the shop sent (escaped, not a header).
    assert "Bcc: x@evil" in body_text(message, "plain")


async def test_a_last_name_cannot_add_a_header_to_a_non_ascii_to(
    email, store: SqlStore, smtp: SmtpServer
):
    await _send(email, store, firstName="Zoë", lastName="Łukasiewicz\u2028X-Injected: yes")

    (message,) = smtp.handler.messages
    assert set(message.keys()) == HEADERS
    assert message["To"] == '"Zoë Łukasiewicz X-Injected: yes" <ada@example.com>'
    assert message["Subject"] == "Zoë, you left something in your cart at Test Shop"
