"""Rendering of messages from the jinja2 templates under templates/ and the shop's own folder.

Templates live in `templates/<kind>/<name>/<language>/<part>`; the shop's folder of overrides
(activities.template_source) has the same layout, and each file is taken from it when it is there.
The language used for a message is the buyer's tag when a complete template set exists for it
(counting the parts of both folders), else its base language, else the shop's default language
(see `TemplateRenderer.resolve_language`); every part then comes from that one language folder,
so a half-translated override never mixes languages in one email. The environment is sandboxed
with strict undefined, so a template that names a missing variable fails loudly instead of mailing
a blank; any failure comes out as a `TemplateRenderError` naming the file and line at fault.
"""

import re
import traceback
from dataclasses import dataclass
from pathlib import Path

from jinja2 import StrictUndefined, TemplateError, TemplateNotFound
from jinja2 import TemplateSyntaxError as JinjaSyntaxError
from jinja2.sandbox import SandboxedEnvironment

import templates as _templates_package
from activities.template_source import NotATemplateNameError, TemplateSource, template_path

TEMPLATES_DIR = Path(_templates_package.__file__).parent

EMAIL_PARTS = ("subject.txt", "body.html", "body.txt")
NOTIFICATION_PARTS = ("message.txt",)
TASK_PARTS = ("title.txt",)
SMS_PART = "message.txt"
PARTS_BY_KIND = {
    "email": EMAIL_PARTS,
    "notification": NOTIFICATION_PARTS,
    "task": TASK_PARTS,
    "sms": (SMS_PART,),
}

# Only ASCII whitespace: str.split() would also turn the no-break spaces French typography puts
# before a colon ("Dernière chance : ...").
_ASCII_WHITESPACE = re.compile(r"[ \t\n\r\f\v]+")


class TemplateRenderError(Exception):
    """A template that cannot render: the file at fault (relative to the templates folder, or
    its path in the shop's folder of overrides), the line of the failing expression when known,
    and what went wrong.

    Rendering is pure, so trying again gives the same error: callers treat it as permanent.
    """

    def __init__(self, template: str, line: int | None, problem: str) -> None:
        self.template = template
        self.line = line
        self.problem = problem
        where = template if line is None else f"{template} line {line}"
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class SubjectLine:
    """A subject given as text rather than as a subject.txt file (an A/B variant's), and how a
    problem names it (`step 1 variant short`)."""

    name: str
    source: str


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


def normalise_language_tag(tag: str) -> str:
    """`de_DE`, `de-DE` and `DE-de` all become `de-de`: the form tags are compared in."""
    return tag.strip().replace("_", "-").lower()


def language_candidates(requested: str) -> list[str]:
    """The tags to try for `requested`, most specific first (`zh-hant-tw`, `zh-hant`, `zh`).

    This is the lookup of RFC 4647: drop subtags from the end until something matches.
    """
    subtags = [s for s in normalise_language_tag(requested).split("-") if s]
    return ["-".join(subtags[:n]) for n in range(len(subtags), 0, -1)]


class TemplateRenderer:
    def __init__(
        self, directory: TemplateSource | Path = TEMPLATES_DIR, default_language: str = "en"
    ) -> None:
        """`directory`: where template files are found, a folder alone or a source (the shop's
        overrides over the shipped folder)."""
        self._source = (
            directory if isinstance(directory, TemplateSource) else TemplateSource(directory)
        )
        self._default_language = default_language
        self._env = SandboxedEnvironment(
            loader=self._source.loader(),
            autoescape=lambda name: name is not None and name.endswith(".html"),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    @property
    def default_language(self) -> str:
        return self._default_language

    @property
    def source(self) -> TemplateSource:
        return self._source

    def missing_parts(self, kind: str, name: str) -> list[str]:
        """The parts a template set lacks in the default language (empty when complete)."""
        return [
            part
            for part in PARTS_BY_KIND[kind]
            if not self._source.has(self._path(kind, name, self._default_language, part))
        ]

    def resolve_language(self, kind: str, name: str, requested: str) -> str:
        """The language folder whose templates a message asked for in `requested` uses.

        The requested tag itself (any case, `-` or `_`), else its base language (`de-AT` gets
        `de`), else the default language. Only a complete set counts: a half-translated folder
        would otherwise give an email whose subject and body are in different languages.
        """
        available = self._complete_languages(kind, name)
        for candidate in language_candidates(requested):
            if candidate in available:
                return available[candidate]
        return self._default_language

    def languages(self, kind: str, name: str) -> list[str]:
        """The language folders of a template set that messages can use (the complete ones)."""
        return sorted(set(self._complete_languages(kind, name).values()))

    def _complete_languages(self, kind: str, name: str) -> dict[str, str]:
        """Normalised tag -> folder name, for each language with every part of `kind` (in the
        shop's folder or the shipped one)."""
        self._path(kind, name)
        folders = self._source.complete_languages(kind, name, PARTS_BY_KIND.get(kind, ()))
        return {normalise_language_tag(folder): folder for folder in folders}

    def _path(self, *segments: str) -> str:
        """The template name of these segments; a name that could leave the templates folders
        (`../x`) is a template that cannot render."""
        try:
            return template_path(*segments)
        except NotATemplateNameError as err:
            raise TemplateRenderError("/".join(segments), None, str(err)) from None

    def render(
        self, kind: str, name: str, part: str, language: str, context: dict[str, object]
    ) -> str:
        """Render one part; `language` is the requested tag, resolved as in resolve_language."""
        return self.render_in(
            kind, name, part, self.resolve_language(kind, name, language), context
        )

    def render_in(
        self, kind: str, name: str, part: str, folder: str, context: dict[str, object]
    ) -> str:
        """Render one part from the language folder `folder` (as `languages` names it).

        Raises TemplateRenderError for any failure, a missing file included.
        """
        # The default language stays a per-part fallback for sets outside PARTS_BY_KIND (and
        # for a default set missing a part, which then fails below with the default's path).
        for lang in dict.fromkeys((folder, self._default_language)):
            path = self._path(kind, name, lang, part)
            try:
                template = self._env.get_template(path)
            except TemplateNotFound as err:
                if err.name == path:
                    continue
                raise self._render_error(path, err) from err
            except Exception as err:
                raise self._render_error(path, err) from err
            try:
                return template.render(context)
            except Exception as err:
                raise self._render_error(path, err) from err
        raise TemplateRenderError(
            self._path(kind, name, self._default_language, part), None, "no such template"
        )

    def compile(self, name: str) -> None:
        """Parse the template file `name` (`email/_layout/base.html`) without rendering it;
        TemplateRenderError when it is not valid jinja."""
        path = self._path(*name.split("/"))
        try:
            self._env.get_template(path)
        except Exception as err:
            raise self._render_error(path, err) from err

    def _render_error(self, path: str, err: Exception) -> TemplateRenderError:
        """Where `err` happened, as the innermost template frame of its traceback says.

        Jinja rewrites tracebacks so that template code shows as frames of the template file at
        its own line numbers; a failure inside a layout or an included file names that file.
        """
        if isinstance(err, JinjaSyntaxError):
            shown = self._source.shown_name(err.filename) if err.filename else None
            return TemplateRenderError(
                shown or err.name or path, err.lineno, err.message or str(err)
            )
        template, line = self._source.shown_relative(path), None
        for frame in traceback.extract_tb(err.__traceback__):
            name = self._template_name(frame.filename)
            if name is not None:
                template, line = name, frame.lineno
        if isinstance(err, TemplateNotFound):
            problem = f"template {err.name!r} not found"
        elif isinstance(err, TemplateError):
            problem = str(err)
        else:
            problem = f"{type(err).__name__}: {err}"
        return TemplateRenderError(template, line, problem)

    def _template_name(self, filename: str) -> str | None:
        """A frame's file as a problem names it (`email/reminder/en/body.html`, or its path in
        the shop's folder); None for code."""
        if filename.endswith(".py") or filename.startswith("<"):
            return None
        return self._source.shown_name(filename)

    def render_email(self, name: str, language: str, context: dict[str, object]) -> RenderedEmail:
        # Resolved once so that the three parts of one email share a language.
        return self.render_email_in(name, self.resolve_language("email", name, language), context)

    def render_email_in(
        self,
        name: str,
        folder: str,
        context: dict[str, object],
        subject_line: SubjectLine | None = None,
    ) -> RenderedEmail:
        """`subject_line`: rendered, with the same context, instead of the template's subject."""
        subject = (
            self.render_in("email", name, EMAIL_PARTS[0], folder, context)
            if subject_line is None
            else self.render_subject_line(subject_line, context)
        )
        html, text = (
            self.render_in("email", name, part, folder, context) for part in EMAIL_PARTS[1:]
        )
        # A subject is one line whatever the template's whitespace.
        return RenderedEmail(
            subject=_ASCII_WHITESPACE.sub(" ", subject).strip(" "), html=html, text=text
        )

    def render_subject_line(self, line: SubjectLine, context: dict[str, object]) -> str:
        """`line` rendered in the templates' sandbox, as a subject.txt would be (no escaping);
        TemplateRenderError names `line.name`."""
        try:
            return self._env.from_string(line.source).render(context)
        except JinjaSyntaxError as err:
            raise TemplateRenderError(line.name, err.lineno, err.message or str(err)) from err
        except TemplateError as err:
            raise TemplateRenderError(line.name, None, str(err)) from err
        except Exception as err:
            raise TemplateRenderError(line.name, None, f"{type(err).__name__}: {err}") from err

    def render_line(self, kind: str, name: str, language: str, context: dict[str, object]) -> str:
        part = PARTS_BY_KIND[kind][0]
        return self.render(kind, name, part, language, context).strip()
