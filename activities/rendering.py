"""Rendering of messages from the jinja2 templates under templates/.

Templates live in `templates/<kind>/<name>/<language>/<part>`; a language without its own copy falls
back to the shop's default language. The environment is sandboxed with strict undefined, so a
template that names a missing variable fails loudly instead of mailing a blank.
"""

from dataclasses import dataclass
from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

import templates as _templates_package

TEMPLATES_DIR = Path(_templates_package.__file__).parent

EMAIL_PARTS = ("subject.txt", "body.html", "body.txt")
NOTIFICATION_PARTS = ("message.txt",)
TASK_PARTS = ("title.txt",)
PARTS_BY_KIND = {"email": EMAIL_PARTS, "notification": NOTIFICATION_PARTS, "task": TASK_PARTS}


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


class TemplateRenderer:
    def __init__(self, directory: Path = TEMPLATES_DIR, default_language: str = "en") -> None:
        self._directory = directory
        self._default_language = default_language
        self._env = SandboxedEnvironment(
            loader=FileSystemLoader(directory),
            autoescape=lambda name: name is not None and name.endswith(".html"),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    @property
    def default_language(self) -> str:
        return self._default_language

    def missing_parts(self, kind: str, name: str) -> list[str]:
        """The parts a template set lacks in the default language (empty when complete)."""
        folder = self._directory / kind / name / self._default_language
        return [part for part in PARTS_BY_KIND[kind] if not (folder / part).is_file()]

    def render(
        self, kind: str, name: str, part: str, language: str, context: dict[str, object]
    ) -> str:
        for lang in dict.fromkeys((language, self._default_language)):
            try:
                template = self._env.get_template(f"{kind}/{name}/{lang}/{part}")
            except TemplateNotFound:
                continue
            return template.render(context)
        raise TemplateNotFound(f"{kind}/{name}/{self._default_language}/{part}")

    def render_email(self, name: str, language: str, context: dict[str, object]) -> RenderedEmail:
        subject, html, text = (
            self.render("email", name, part, language, context) for part in EMAIL_PARTS
        )
        # A subject is one line whatever the template's whitespace.
        return RenderedEmail(subject=" ".join(subject.split()), html=html, text=text)

    def render_line(self, kind: str, name: str, language: str, context: dict[str, object]) -> str:
        part = PARTS_BY_KIND[kind][0]
        return self.render(kind, name, part, language, context).strip()
