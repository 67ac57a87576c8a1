"""`policy check` and worker start with the shop's own templates (CHECKOUT_RECOVERY_TEMPLATES_DIR):
every override is rendered or parsed, and a broken one is named by its file in the shop's folder.

Commands run in-process through typer's CliRunner, with the variable in their environment.
"""

import json
from pathlib import Path

from typer.testing import CliRunner, Result

from cli.main import app
from tests.template_files import write_template_set


def _cli(*args: str, templates: Path, **env: str) -> Result:
    environment = {"CHECKOUT_RECOVERY_TEMPLATES_DIR": str(templates), "COLUMNS": "200", **env}
    return CliRunner().invoke(app, list(args), env=environment)


def _write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_policy_check_lists_the_overrides_it_checked(tmp_path: Path) -> None:
    _write(tmp_path, "email/reminder/en/subject.txt", "{{ first_name or 'Hello' }}, your cart")
    _write(tmp_path, "email/_layout/base.html", "<html>{% block body %}{% endblock %}</html>")

    result = _cli("policy", "check", "default", "--json", templates=tmp_path)

    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["templateOverrides"] == str(tmp_path)
    assert facts["overriddenTemplates"] == [
        "email/_layout/base.html",
        "email/reminder/en/subject.txt",
    ]
    table = _cli("policy", "check", "default", templates=tmp_path)
    assert f"templateOverrides: {tmp_path}\n    email/_layout/base.html\n" in table.stdout


def test_policy_check_names_each_broken_override_by_its_file(tmp_path: Path) -> None:
    subject = _write(tmp_path, "email/reminder/de/subject.txt", "Hallo\n{{ buyer.nickname }}")
    # Not used by the default policy: parsed, not rendered.
    unused = write_template_set(tmp_path, "email", "winback", "en", body_txt="{% if %}")
    misspelt = _write(tmp_path, "email/last_chance/en/subjet.txt", "Last call")
    half = _write(tmp_path, "email/last_chance/pt/subject.txt", "Última chamada")

    result = _cli("policy", "check", "default", templates=tmp_path)

    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    errors = result.stderr
    assert (
        f"step 1 (email): template 'reminder', language de: {subject} line 2: "
        "'buyer' is undefined (with every sample checkout)"
    ) in errors
    assert f"template override {unused}/body.txt line 1: Expected an expression" in errors
    assert (
        f"template override {misspelt}: not a part of email templates "
        "(subject.txt, body.html, body.txt)"
    ) in errors
    assert (
        f"template override {half}: email/last_chance/pt lacks body.html, body.txt here and in "
        "the shipped templates, so this language is never used"
    ) in errors
    # The shipped templates render: only the shop's files are named.
    assert "email/reminder/en" not in errors


def test_the_worker_refuses_to_start_on_a_broken_override(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    broken = _write(templates, "email/last_chance/en/body.html", "<p>{{ total | nosuchfilter }}")

    # Nothing listens at TEMPORAL_ADDRESS: the worker must stop before trying it.
    result = _cli(
        "worker",
        templates=templates,
        TEMPORAL_ADDRESS="127.0.0.1:9",
        CHECKOUT_RECOVERY_DATA_DIR=str(tmp_path / "data"),
    )

    assert result.exit_code == 2, result.output
    assert f"{broken} line 1: No filter named 'nosuchfilter'" in result.stderr
    assert "cannot reach Temporal" not in result.stderr


def test_a_templates_folder_that_does_not_exist_is_a_setup_error(tmp_path: Path) -> None:
    result = _cli("policy", "check", "default", templates=tmp_path / "nowhere")

    assert result.exit_code == 1, result.output
    assert f"CHECKOUT_RECOVERY_TEMPLATES_DIR {tmp_path / 'nowhere'}: no such folder" in (
        result.stderr
    )
