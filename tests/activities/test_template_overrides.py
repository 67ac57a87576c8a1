"""The shop's own templates (CHECKOUT_RECOVERY_TEMPLATES_DIR) over the shipped ones: each file is
taken from the shop's folder when it is there, the language is chosen first over both folders,
and every part then comes from that one language. Rendered with the real context builder and the
shipped templates, as the email activity renders them."""

from pathlib import Path

import pytest

from activities.message_context import checkout_context
from activities.rendering import TEMPLATES_DIR, TemplateRenderer, TemplateRenderError
from activities.template_source import TemplateSource
from tests.support import engine_settings, sample_checkout
from tests.template_files import write_template_set
from workers.worker import template_renderer_for

SHIPPED_EN_SUBJECT = "Ada, you left something in your cart at Test Shop"
SHIPPED_DE_SUBJECT = "Ada, Sie haben etwas in Ihrem Warenkorb bei Test Shop vergessen"


def _renderer(overrides: Path) -> TemplateRenderer:
    return TemplateRenderer(TemplateSource(TEMPLATES_DIR, overrides))


def _context(language: str = "en", **checkout: object) -> dict[str, object]:
    found = sample_checkout(buyerLanguage=language, **checkout)
    return checkout_context(found, "Test Shop", locale=language, time_zone="Europe/Berlin")


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_one_overridden_part_replaces_that_part_only(tmp_path: Path) -> None:
    _write(tmp_path, "email/reminder/en/subject.txt", "{{ first_name }}, still thinking it over?")

    shipped = TemplateRenderer().render_email("reminder", "en", _context())
    mine = _renderer(tmp_path).render_email("reminder", "en", _context())

    assert mine.subject == "Ada, still thinking it over?"
    assert shipped.subject == SHIPPED_EN_SUBJECT
    assert (mine.html, mine.text) == (shipped.html, shipped.text)
    assert "Linen shirt" in mine.text


def test_an_override_in_one_language_leaves_the_others_alone(tmp_path: Path) -> None:
    _write(tmp_path, "email/reminder/de/subject.txt", "Noch da, {{ first_name }}?")
    renderer = _renderer(tmp_path)

    german = renderer.render_email("reminder", "de-AT", _context("de"))
    english = renderer.render_email("reminder", "en", _context())

    assert german.subject == "Noch da, Ada?"
    assert "Hallo Ada," in german.text  # the shipped German body, not the English one
    assert english.subject == SHIPPED_EN_SUBJECT


def test_languages_never_mix_when_an_override_language_is_incomplete(tmp_path: Path) -> None:
    # A Portuguese subject alone: no body exists in Portuguese in either folder.
    _write(tmp_path, "email/reminder/pt/subject.txt", "Olá {{ first_name }}, o seu carrinho")
    renderer = _renderer(tmp_path)

    assert renderer.resolve_language("email", "reminder", "pt-BR") == "en"
    email = renderer.render_email("reminder", "pt-BR", _context("pt"))

    assert email.subject == SHIPPED_EN_SUBJECT
    assert "Hi Ada," in email.text


def test_parts_from_both_folders_make_a_language_complete(tmp_path: Path) -> None:
    # German exists shipped; the shop adds Dutch subject and text here, html from neither:
    # incomplete. Then the html too: complete, all three from the shop's folder.
    write_template_set(tmp_path, "email", "reminder", "nl", subject_txt="Hoi {{ first_name }}")
    (tmp_path / "email/reminder/nl/body.html").unlink()
    renderer = _renderer(tmp_path)
    assert "nl" not in renderer.languages("email", "reminder")
    assert renderer.missing_parts("email", "reminder") == []

    # A new language folder changes the template's folder, so a running renderer sees it.
    write_template_set(tmp_path, "email", "reminder", "nl-be", subject_txt="Dag {{ first_name }}")
    assert renderer.languages("email", "reminder") == ["de", "en", "es", "fr", "nl-be"]
    assert renderer.render_email("reminder", "nl_BE", _context()).subject == "Dag Ada"


def test_a_template_only_in_the_shops_folder(tmp_path: Path) -> None:
    write_template_set(
        tmp_path, "email", "winback", "en", subject_txt="We saved your {{ items_count }} items"
    )
    renderer = _renderer(tmp_path)

    assert renderer.languages("email", "winback") == ["en"]
    assert renderer.missing_parts("email", "winback") == []
    assert renderer.render_email("winback", "de", _context("de")).subject == (
        "We saved your 3 items"
    )
    assert TemplateRenderer().missing_parts("email", "winback") == [
        "subject.txt",
        "body.html",
        "body.txt",
    ]


@pytest.mark.parametrize("name", ["../../outside", "..", "reminder/../../../outside", ".hidden"])
def test_a_template_name_cannot_leave_the_template_folders(tmp_path: Path, name: str) -> None:
    overrides = tmp_path / "overrides"
    overrides.mkdir()
    # A complete set where `email/../../outside` would point, from the shop's folder.
    write_template_set(tmp_path, "email", "outside", "en", subject_txt="LEAKED")
    write_template_set(tmp_path / "outside", "email", "x", "en", subject_txt="LEAKED")
    renderer = _renderer(overrides)

    with pytest.raises(TemplateRenderError, match="is not a template name"):
        renderer.render_email(name, "en", _context())
    with pytest.raises(TemplateRenderError, match="is not a template name"):
        renderer.languages("email", name)
    with pytest.raises(TemplateRenderError, match="is not a template name"):
        renderer.render_in("email", "reminder", "subject.txt", "../../outside/email/x/en", {})


def test_an_error_in_an_override_names_the_shops_file(tmp_path: Path) -> None:
    _write(tmp_path, "email/reminder/en/body.txt", "Hello\n{{ buyer.nickname }}\n")

    with pytest.raises(TemplateRenderError) as raised:
        _renderer(tmp_path).render_email("reminder", "en", _context())

    assert raised.value.template == f"{tmp_path}/email/reminder/en/body.txt"
    assert raised.value.line == 2


def test_overrides_are_sandboxed_and_escaped_as_the_shipped_ones(tmp_path: Path) -> None:
    _write(tmp_path, "email/reminder/en/body.html", "<p>{{ first_name }}</p>")
    _write(tmp_path, "email/reminder/en/subject.txt", "{{ ''.__class__.__mro__ }}")
    renderer = _renderer(tmp_path)
    context = _context(contactDetails={"firstName": "<b>Ada</b>"})

    html = renderer.render_in("email", "reminder", "body.html", "en", context)
    assert html == "<p>&lt;b&gt;Ada&lt;/b&gt;</p>"
    with pytest.raises(TemplateRenderError, match="unsafe"):
        renderer.render_in("email", "reminder", "subject.txt", "en", context)
    with pytest.raises(TemplateRenderError, match="'nothing' is undefined"):
        _write(tmp_path, "email/reminder/en/body.txt", "{{ nothing }}")
        renderer.render_in("email", "reminder", "body.txt", "en", context)


def test_the_setting_names_the_folder_and_a_missing_one_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "email/reminder/en/subject.txt", "From the setting")
    renderer = template_renderer_for(engine_settings(25, templates_dir=tmp_path))
    assert renderer.render_email("reminder", "en", _context()).subject == "From the setting"

    missing = tmp_path / "nowhere"
    with pytest.raises(NotADirectoryError, match=f"CHECKOUT_RECOVERY_TEMPLATES_DIR {missing}"):
        template_renderer_for(engine_settings(25, templates_dir=missing))
