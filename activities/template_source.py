"""Where a template's files come from: the shop's own folder first, then the shipped ones.

The shop's folder (CHECKOUT_RECOVERY_TEMPLATES_DIR) has the layout of the shipped `templates/`
package, `<kind>/<name>/<language>/<part>`, and may hold any subset of it: one `subject.txt`
overrides one subject, a whole new `<name>` adds a template. Each file is looked up in the shop's
folder, then in the shipped one; a language counts as complete when every part exists in either.

This object is the seam for shops: today one source serves the engine, later a source per shop
(from a folder or the store) replaces it without the renderer changing.
"""

import re
from pathlib import Path

from jinja2 import BaseLoader, FileSystemLoader

# One path segment: no separator, no `..`, no hidden or empty name. Template names reach the file
# system, so a name like `../../etc` must be refused before any stat, not only by jinja's loader.
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class NotATemplateNameError(ValueError):
    """A kind, name, language or part that is not one plain path segment."""


def template_path(*segments: str) -> str:
    """`email/reminder/en/subject.txt` from its segments; NotATemplateNameError for a segment
    that could leave the templates folder."""
    for segment in segments:
        if not _SEGMENT.fullmatch(segment) or ".." in segment:
            raise NotATemplateNameError(f"{'/'.join(segments)!r} is not a template name")
    return "/".join(segments)


class TemplateSource:
    def __init__(self, shipped: Path, overrides: Path | None = None) -> None:
        if overrides is not None and not overrides.is_dir():
            raise NotADirectoryError(f"template overrides folder {overrides}: no such folder")
        self._shipped = shipped
        self._overrides = overrides
        # Most specific first, as jinja's loader searches them.
        self._folders = (shipped,) if overrides is None else (overrides, shipped)
        self._resolved = [(folder.resolve(), folder) for folder in self._folders]
        self._complete: dict[tuple[str, str], tuple[tuple[int | None, ...], list[str]]] = {}

    @property
    def overrides(self) -> Path | None:
        return self._overrides

    def loader(self) -> BaseLoader:
        """Finds each template file in the shop's folder, else the shipped one (the layout and
        included files too)."""
        return FileSystemLoader(self._folders)

    def has(self, relative: str) -> bool:
        return any((folder / relative).is_file() for folder in self._folders)

    def is_overridden(self, relative: str) -> bool:
        return self._overrides is not None and (self._overrides / relative).is_file()

    def complete_languages(self, kind: str, name: str, parts: tuple[str, ...]) -> list[str]:
        """The language folders of `kind/name` in which every one of `parts` exists, in one
        source or the other (sorted).

        Kept until a `kind/name` folder changes (a language folder added or removed), so a send
        costs a stat per source instead of a directory walk.
        """
        relative = template_path(kind, name)
        folders = [folder / relative for folder in self._folders]
        stamps = tuple(_mtime(folder) for folder in folders)
        cached = self._complete.get((kind, name))
        if cached is not None and cached[0] == stamps:
            return cached[1]
        languages = {
            entry.name
            for folder, stamp in zip(folders, stamps, strict=True)
            if stamp is not None
            for entry in folder.iterdir()
            if entry.is_dir() and _SEGMENT.fullmatch(entry.name)
        }
        found = [
            language
            for language in sorted(languages)
            if all(self.has(f"{relative}/{language}/{part}") for part in parts)
        ]
        self._complete[(kind, name)] = (stamps, found)
        return found

    def shown_name(self, filename: str) -> str | None:
        """How a problem names a template file: `email/reminder/en/body.html` for a shipped
        one, the file's path under the shop's folder for an override (so that the merchant sees
        which of the two is at fault); None for a file of neither (code)."""
        try:
            resolved = Path(filename).resolve()
        except (OSError, ValueError):
            return None
        for root, folder in self._resolved:
            try:
                relative = resolved.relative_to(root).as_posix()
            except ValueError:
                continue
            return relative if folder is self._shipped else (folder / relative).as_posix()
        return None

    def shown_relative(self, relative: str) -> str:
        """`relative` as shown_name shows the file it finds."""
        if self.is_overridden(relative):
            assert self._overrides is not None
            return (self._overrides / relative).as_posix()
        return relative

    def override_files(self) -> list[str]:
        """Every file in the shop's folder, relative to it (`email/reminder/en/subject.txt`)."""
        if self._overrides is None:
            return []
        relative = (path.relative_to(self._overrides) for path in self._overrides.rglob("*"))
        # Hidden files (an editor's swap file, .DS_Store) are no templates.
        return sorted(
            path.as_posix()
            for path in relative
            if (self._overrides / path).is_file()
            and not any(part.startswith(".") for part in path.parts)
        )


def _mtime(folder: Path) -> int | None:
    try:
        return folder.stat().st_mtime_ns
    except (FileNotFoundError, NotADirectoryError):
        return None
