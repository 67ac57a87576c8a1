"""Every template of a policy is rendered before any buyer meets it: in each language folder,
for a sample checkout and the edge cases (no names, no line items, very long values, a coupon
where the step has one). A failure names the step, template, language, file and line."""

from pathlib import Path

import pytest

from activities.rendering import TemplateRenderer, TemplateRenderError
from activities.template_check import sample_cases, template_problems
from domain.errors import InvalidInputError
from domain.policy import RecoveryPolicy, parse_policy
from tests.support import engine_settings, sample_checkout
from tests.template_files import write_template_set
from workers.policy_files import builtin_names, load_policy
from workers.worker import check_policy


def _policy(*steps: dict[str, object]) -> RecoveryPolicy:
    return parse_policy({"name": "test", "steps": list(steps)}, "test.toml")


def _email(template: str, delay: str = "1h", **extra: object) -> dict[str, object]:
    return {"delay": delay, "action": "email", "template": template, **extra}


@pytest.mark.parametrize("name", builtin_names())
def test_shipped_policies_render_in_every_language_and_case(name: str) -> None:
    assert template_problems(load_policy(name), TemplateRenderer()) == []


def test_every_shipped_template_renders_with_and_without_coupons() -> None:
    policy = _policy(
        _email("reminder", "1h"),
        _email("reminder", "2h", coupon={"percent_off": 10}),
        _email("last_chance", "3h"),
        _email("last_chance", "4h", coupon={"amount_off": "5.00", "prefix": ""}),
        {"delay": "5h", "action": "notification", "url": "https://hooks.example/x"},
        {"delay": "6h", "action": "task", "assignee": "sales"},
    )
    renderer = TemplateRenderer()
    assert renderer.languages("email", "reminder") == ["de", "en", "es", "fr"]
    assert template_problems(policy, renderer, sample_checkout()) == []


def test_an_undefined_variable_names_template_language_file_and_line(tmp_path: Path) -> None:
    write_template_set(tmp_path, "email", "promo", "en")
    write_template_set(
        tmp_path, "email", "promo", "de", body_txt="Hallo,\n\n{{ buyer.nickname }}\n"
    )

    problems = template_problems(_policy(_email("promo")), TemplateRenderer(tmp_path))

    assert problems == [
        "step 1 (email): template 'promo', language de: email/promo/de/body.txt line 3: "
        "'buyer' is undefined (with every sample checkout)"
    ]


def test_edge_cases_are_named_when_only_they_fail(tmp_path: Path) -> None:
    write_template_set(
        tmp_path,
        "email",
        "promo",
        "en",
        subject_txt="{{ first_name.upper() }}, your cart",
        body_txt="Your {{ line_items[0].name }} is waiting.\n"
        "{% if line_items | length > 20 %}And {{ more_count }} more.{% endif %}\n",
    )

    problems = template_problems(_policy(_email("promo")), TemplateRenderer(tmp_path))

    prefix = "step 1 (email): template 'promo', language en: "
    assert problems == [
        prefix + "email/promo/en/subject.txt line 1: 'None' has no attribute 'upper' "
        "(with a checkout without names)",
        prefix + "email/promo/en/body.txt line 1: list object has no element 0 "
        "(with a checkout without line items)",
        prefix + "email/promo/en/body.txt line 2: 'more_count' is undefined "
        "(with a checkout with very long values)",
    ]


def test_the_given_sample_is_rendered_too(tmp_path: Path) -> None:
    write_template_set(tmp_path, "email", "promo", "en", body_txt="{{ line_items[2].name }}")
    renderer = TemplateRenderer(tmp_path)
    three_items = sample_checkout(
        lineItems=[{"name": f"item {n}", "quantity": 1, "price": {"amount": "1.00"}} for n in "abc"]
    )
    # The sample checkout has three items; the built-in one has two.
    problems = template_problems(_policy(_email("promo")), renderer, three_items)
    assert len(problems) == 1
    assert "list object has no element 2" in problems[0]
    assert "the sample checkout" not in problems[0]
    assert "a checkout without names" in problems[0]


def test_a_coupon_is_there_exactly_when_the_step_has_one(tmp_path: Path) -> None:
    write_template_set(
        tmp_path, "email", "promo", "en", body_txt="Code {{ coupon.code }}: {{ coupon.discount }}"
    )
    renderer = TemplateRenderer(tmp_path)

    with_coupon = _policy(_email("promo", coupon={"percent_off": 15}))
    without = _policy(_email("promo"))

    assert template_problems(with_coupon, renderer) == []
    (problem,) = template_problems(without, renderer)
    assert "email/promo/en/body.txt line 1: 'coupon' is undefined" in problem


def test_a_failure_in_the_layout_names_the_layout(tmp_path: Path) -> None:
    layout = tmp_path / "email" / "_layout" / "base.html"
    layout.parent.mkdir(parents=True)
    layout.write_text("<html>\n<body>{% block intro %}{% endblock %}\n{{ footer_text }}\n</html>")
    write_template_set(
        tmp_path,
        "email",
        "promo",
        "en",
        body_html='{% extends "email/_layout/base.html" %}\n{% block intro %}Hi{% endblock %}',
    )

    (problem,) = template_problems(_policy(_email("promo")), TemplateRenderer(tmp_path))

    assert "language en: email/_layout/base.html line 3: 'footer_text' is undefined" in problem


def test_a_syntax_error_names_its_line(tmp_path: Path) -> None:
    write_template_set(tmp_path, "task", "call", "en", title_txt="Call\n{% if %}{% endif %}")
    policy = _policy({"delay": "1h", "action": "task", "assignee": "sales", "template": "call"})

    (problem,) = template_problems(policy, TemplateRenderer(tmp_path))

    assert problem.startswith("step 1 (task): template 'call', language en: task/call/en/title.txt")
    assert "line 2:" in problem


def test_worker_start_refuses_a_policy_whose_template_does_not_render(tmp_path: Path) -> None:
    write_template_set(tmp_path, "email", "reminder", "en", subject_txt="Hi {{ nickname }}")
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(
        'name = "p"\n[[steps]]\ndelay = "1h"\naction = "email"\ntemplate = "reminder"\n'
    )
    settings = engine_settings(25, policy=str(policy_file))

    with pytest.raises(InvalidInputError) as raised:
        check_policy(settings, TemplateRenderer(tmp_path))

    assert raised.value.problems == [
        "step 1 (email): template 'reminder', language en: email/reminder/en/subject.txt "
        "line 1: 'nickname' is undefined (with every sample checkout)"
    ]


def test_missing_parts_are_still_reported_as_such(tmp_path: Path) -> None:
    (tmp_path / "email" / "promo" / "en").mkdir(parents=True)
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(
        'name = "p"\n[[steps]]\ndelay = "1h"\naction = "email"\ntemplate = "promo"\n'
    )

    with pytest.raises(InvalidInputError) as raised:
        load_policy(str(policy_file), TemplateRenderer(tmp_path))

    assert raised.value.problems == [
        "step 1 (email): template: 'promo' lacks subject.txt, body.html, body.txt"
    ]


def test_the_edge_cases_are_what_they_say() -> None:
    cases = {case.label: case.checkout for case in sample_cases()}
    assert cases["a checkout without names"].contact_details.first_name is None
    assert cases["a checkout without line items"].line_items == []
    long_values = cases["a checkout with very long values"]
    assert len(long_values.line_items) > 100
    assert len(long_values.contact_details.first_name or "") > 200


def test_a_render_error_at_send_time_says_where(tmp_path: Path) -> None:
    write_template_set(tmp_path, "notification", "alert", "en", message_txt="\n\n{{ 1 / 0 }}")
    with pytest.raises(TemplateRenderError) as raised:
        TemplateRenderer(tmp_path).render_line("notification", "alert", "en", {})
    assert str(raised.value) == (
        "notification/alert/en/message.txt line 3: ZeroDivisionError: division by zero"
    )
