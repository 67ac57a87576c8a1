"""`checkout-recovery policy check`: every shipped policy passes; timelines and errors as shown."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from workers.policy_files import builtin_names

runner = CliRunner()


@pytest.mark.parametrize("name", builtin_names())
def test_every_shipped_policy_passes(name: str) -> None:
    result = runner.invoke(app, ["policy", "check", name, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["policy"] == name


def test_the_three_required_policies_ship() -> None:
    assert {"default", "fashion", "b2b"} <= set(builtin_names())


def test_timeline_for_a_sample_checkout_in_the_buyers_zone(tmp_path: Path) -> None:
    sample = tmp_path / "checkout.json"
    sample.write_text(
        json.dumps(
            {
                "checkoutId": "c-1",
                "createdDate": "2026-03-28T20:30:00Z",
                "buyerInfo": {"visitorId": "v-1", "email": "a@example.com"},
                "buyerLanguage": "fr",
                "buyerTimeZone": "Europe/Paris",
                "currency": "EUR",
                "totalPrice": {"amount": "55.00"},
                "checkoutUrl": "https://shop.example/c/1",
            }
        )
    )
    result = runner.invoke(
        app,
        [
            "policy",
            "check",
            "fashion",
            "--checkout",
            str(sample),
            "--reported-at",
            "2026-03-28T20:30:00+00:00",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    timeline = json.loads(result.output)
    first, second = timeline["steps"]
    # 30 min after 21:30 Paris is 22:00, outside 09:00-22:00: the next opening is 09:00 on the
    # 29th, which is already summer time (UTC+2), so 07:00 UTC.
    assert first["dueUtc"] == "2026-03-29T07:00:00+00:00"
    assert first["dueLocal"] == "2026-03-29T09:00:00+02:00"
    assert first["movedIntoSendWindow"] is True
    assert first["consent"] == "first_email" and first["outcome"] == "send"
    assert second["outcome"] == "skip: no_consent"
    assert timeline["buyerTimeZone"] == "Europe/Paris"


def test_a_broken_policy_is_refused_naming_each_problem(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(
        'name = "broken"\ntime_zone = "Mars/Olympus"\nconsent = "maybe"\n'
        '[send_window]\nstart = "9am"\nend = "17:00"\n'
        '[[steps]]\ndelay = "1h"\naction = "email"\ntemplate = "reminder"\n'
        '[steps.coupon]\npercent_off = 10\namount_off = "5.00"\n'
    )
    result = runner.invoke(app, ["policy", "check", str(broken)])
    assert result.exit_code == 2
    message = result.output
    assert "time_zone" in message and "Mars/Olympus" in message
    assert "consent" in message
    assert "send_window.start" in message and "9am" in message
    assert "step 1 (email): coupon" in message and "exactly one of" in message


def test_a_missing_sample_file_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["policy", "check", "default", "--checkout", str(tmp_path / "nope.json")]
    )
    assert result.exit_code == 2
    assert "sample checkout" in result.output and "nope.json" in result.output
