"""One real recovery email with the shop's own subject: a worker configured with
CHECKOUT_RECOVERY_TEMPLATES_DIR sends it over SMTP (a real server on loopback), the rest of the
email coming from the shipped templates."""

from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.api.stack import FAST_POLICY, Stack, checkout_body
from tests.support import SmtpServer, body_text, eventually


async def test_the_buyer_gets_the_overridden_subject(
    dev_server_env: WorkflowEnvironment, smtp: SmtpServer, tmp_path: Path
) -> None:
    subject = tmp_path / "templates" / "email" / "reminder" / "en" / "subject.txt"
    subject.parent.mkdir(parents=True)
    subject.write_text(
        "{{ first_name }}, your {{ items_count }} items are on hold at {{ shop_name }}"
    )

    async with Stack.running(
        dev_server_env.client,
        smtp=smtp,
        data_dir=tmp_path,
        policy=FAST_POLICY,
        serve=True,
        templates_dir=tmp_path / "templates",
    ) as stack:
        reported = await stack.report(checkout_body())
        assert reported.status_code == 201, reported.text
        message = await eventually(
            lambda: _first(smtp), what="the first recovery email", timeout=60
        )

    assert message["Subject"] == "Ada, your 3 items are on hold at Test Shop"
    assert message["To"] == "Ada Lovelace <ada@example.com>"
    # The body is the shipped English one, links and all.
    assert "Hi Ada," in body_text(message, "plain")
    assert "redirect-to-checkout?token=" in body_text(message, "html")


async def _first(smtp: SmtpServer):
    return smtp.handler.messages[0] if smtp.handler.messages else None
