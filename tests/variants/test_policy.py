"""Variants in a policy file: what parses, what is refused (naming the step and the variant), and
what `policy check` shows and checks."""

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from domain.errors import InvalidInputError
from domain.policy import EmailStep, parse_policy
from domain.variants import assign_variant
from service.checkouts import derive_checkout_id
from tests.support import sample_checkout

runner = CliRunner()

STEP = """
name = "ab"
[[steps]]
delay = "1h"
action = "email"
template = "reminder"
"""

TWO = """
[[steps.variants]]
name = "plain"
[[steps.variants]]
name = "urgent"
weight = 3
subject = "Last call, {{ shop_name }}"
template = "last_chance"
"""


def _problems(toml: str) -> list[str]:
    with pytest.raises(InvalidInputError) as raised:
        parse_policy(tomllib.loads(toml), "ab.toml")
    return raised.value.problems


def test_a_step_with_two_variants() -> None:
    policy = parse_policy(
        tomllib.loads(STEP + TWO.replace('name = "plain"', 'name = "plain"\nsubject = "Hi"')),
        "ab.toml",
    )
    step = policy.steps[0]
    assert isinstance(step, EmailStep) and step.variants is not None
    assert [(v.name, v.weight, v.template, v.subject) for v in step.variants] == [
        ("plain", 1, None, "Hi"),
        ("urgent", 3, "last_chance", "Last call, {{ shop_name }}"),
    ]


def test_a_step_without_variants_is_as_before() -> None:
    step = parse_policy(tomllib.loads(STEP), "ab.toml").steps[0]
    assert isinstance(step, EmailStep) and step.variants is None


@pytest.mark.parametrize(
    ("variants", "expected"),
    [
        # A variant that changes nothing.
        (TWO, "step 1 (email), variant 1: give a template, a subject, or both"),
        ('[[steps.variants]]\nname = "only"\nsubject = "x"\n', "step 1 (email): variants"),
        (
            TWO.replace('name = "plain"', 'name = "Plain Text"\nsubject = "x"'),
            "step 1 (email), variant 1: name",
        ),
        (
            TWO.replace('name = "plain"', 'name = "urgent"\nsubject = "x"'),
            "variant names must be unique in the step: urgent",
        ),
        (
            TWO.replace("weight = 3", "weight = 0").replace(
                'name = "plain"', 'name = "p"\nsubject = "x"'
            ),
            "step 1 (email), variant 2: weight",
        ),
        (
            TWO.replace('template = "last_chance"', 'template = "../etc"').replace(
                'name = "plain"', 'name = "p"\nsubject = "x"'
            ),
            "step 1 (email), variant 2: template",
        ),
        (
            (TWO.replace('name = "plain"', 'name = "p"\nsubject = "x"'))
            + "[steps.variants.extra]\n",
            "step 1 (email), variant 2: extra",
        ),
    ],
)
def test_bad_variants_are_refused_naming_step_and_variant(variants: str, expected: str) -> None:
    problems = _problems(STEP + variants)
    assert any(expected in problem for problem in problems), problems


def test_more_than_ten_variants_are_refused() -> None:
    many = "".join(f'[[steps.variants]]\nname = "v{n}"\nsubject = "s"\n' for n in range(11))
    assert any(
        "step 1 (email): variants" in p and "at most 10" in p for p in _problems(STEP + many)
    )


def _policy_file(tmp_path: Path, variants: str) -> Path:
    path = tmp_path / "ab.toml"
    path.write_text(STEP + variants)
    return path


GOOD = TWO.replace('name = "plain"', 'name = "plain"\nsubject = "Still there, {{ first_name }}?"')


def test_policy_check_shows_the_variant_the_sample_gets(tmp_path: Path) -> None:
    path = _policy_file(tmp_path, GOOD)
    step = parse_policy(tomllib.loads(STEP + GOOD), "ab.toml").steps[0]
    assert isinstance(step, EmailStep)
    # Two sample checkouts that get different variants, found by the rule itself.
    samples: dict[str, Path] = {}
    for n in range(100):
        data = {
            "checkoutId": f"sample-{n}",
            "buyerInfo": {"visitorId": "v", "email": "a@example.com"},
            "currency": "EUR",
            "totalPrice": {"amount": "10.00"},
            "checkoutUrl": "https://shop.example/c",
        }
        variant = assign_variant(step, derive_checkout_id(sample_checkout(**data)), 0)
        assert variant is not None
        if variant.name not in samples:
            samples[variant.name] = tmp_path / f"{variant.name}.json"
            samples[variant.name].write_text(json.dumps(data))
    assert set(samples) == {"plain", "urgent"}
    for name, sample in samples.items():
        result = runner.invoke(
            app, ["policy", "check", str(path), "--checkout", str(sample), "--json"]
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["steps"][0]["variant"] == name
        table = runner.invoke(
            app, ["policy", "check", str(path), "--checkout", str(sample)], env={"COLUMNS": "200"}
        )
        assert table.exit_code == 0, table.output
        assert f"(variant {name})" in table.output
    # A step without variants shows none.
    plain = runner.invoke(app, ["policy", "check", "default", "--json"])
    assert all("variant" not in s for s in json.loads(plain.output)["steps"])


def test_policy_check_renders_each_variants_subject_and_template(tmp_path: Path) -> None:
    broken = GOOD.replace("{{ first_name }}?", "{{ cart.title }}").replace(
        'template = "last_chance"', 'template = "no_such_template"'
    )
    result = runner.invoke(app, ["policy", "check", str(_policy_file(tmp_path, broken))])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert (
        "step 1 (email), variant plain: template 'reminder', language en: subject: 'cart' is undefined"
        in output
    )
    assert "step 1 (email), variant urgent: template 'no_such_template' lacks" in output
