"""`checkout-recovery policy check` and worker start render every template of a policy, run as a
user runs them: the installed command in a subprocess.

Templates are found in the `templates` package; a test gives the command its own copy of the
shipped package, first on PYTHONPATH, with a broken template added.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, sample_checkout_data
from tests.template_files import shipped_templates_package, write_template_set

COMMAND = Path(sys.executable).parent / "checkout-recovery"

BROKEN_POLICY = """\
name = "broken-templates"

[[steps]]
delay = "1h"
action = "email"
template = "reminder"

[[steps]]
delay = "2h"
action = "email"
template = "promo"
"""


def _run(
    *args: str, site: Path | None = None, **environment: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **environment}
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return subprocess.run(
        [str(COMMAND), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A PYTHONPATH folder whose `templates` package is the shipped one plus a broken `promo`
    email: fine in English, an undefined variable on line 3 of the German text part."""
    site = tmp_path / "site"
    package = shipped_templates_package(site)
    write_template_set(package, "email", "promo", "en")
    write_template_set(package, "email", "promo", "de", body_txt="Hallo,\n\n{{ buyer.nickname }}\n")
    return site


def test_policy_check_fails_naming_template_language_and_line(tmp_path: Path, site: Path):
    policy = tmp_path / "broken.toml"
    policy.write_text(BROKEN_POLICY)

    result = _run("policy", "check", str(policy), site=site)

    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        "step 2 (email): template 'promo', language de: email/promo/de/body.txt line 3: "
        "'buyer' is undefined"
    ) in result.stderr
    # The shipped reminder (step 1) renders in every language: it is not mentioned.
    assert "step 1" not in result.stderr
    assert result.stdout == ""


def test_policy_check_renders_the_given_sample_checkout(tmp_path: Path, site: Path):
    write_template_set(
        site / "templates", "email", "promo", "en", subject_txt="{{ line_items[1].name }}"
    )
    write_template_set(site / "templates", "email", "promo", "de")
    policy = tmp_path / "promo.toml"
    policy.write_text(BROKEN_POLICY)
    one_item = tmp_path / "checkout.json"
    one_item.write_text(
        json.dumps(
            sample_checkout_data(
                lineItems=[{"name": "Linen shirt", "quantity": 1, "price": {"amount": "30.00"}}]
            )
        )
    )

    result = _run("policy", "check", str(policy), "--checkout", str(one_item), site=site)

    assert result.returncode == 2
    # The sample has one line item: it fails, as does the edge case without items; the
    # built-in checkouts with two items or more pass.
    assert (
        "language en: email/promo/en/subject.txt line 1: list object has no element 1 "
        "(with the sample checkout, a checkout without line items)"
    ) in result.stderr


@pytest.mark.parametrize("policy", sorted((REPO / "policies").glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_policy_file_passes(policy: Path):
    result = _run("policy", "check", str(policy), "--json")
    assert result.returncode == 0, result.stderr


def test_worker_start_refuses_the_policy_before_connecting(tmp_path: Path, site: Path):
    policy = tmp_path / "broken.toml"
    policy.write_text(BROKEN_POLICY)

    # Nothing listens at TEMPORAL_ADDRESS: the worker must stop before trying it.
    result = _run(
        "worker",
        "--policy",
        str(policy),
        site=site,
        TEMPORAL_ADDRESS="127.0.0.1:9",
        CHECKOUT_RECOVERY_DATA_DIR=str(tmp_path / "data"),
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert "email/promo/de/body.txt line 3: 'buyer' is undefined" in result.stderr
