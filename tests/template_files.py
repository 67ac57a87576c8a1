"""Template folders made for a test: a set of parts written out, or a copy of the shipped ones."""

import shutil
from pathlib import Path

from activities.rendering import PARTS_BY_KIND, TEMPLATES_DIR

# What each part says when a test does not say otherwise: renders with any context.
PLAIN = {
    "subject.txt": "Your cart at {{ shop_name }}",
    "body.html": "<p>{{ total }}</p>",
    "body.txt": "Total: {{ total }}",
    "message.txt": "Checkout {{ checkout_id }}",
    "title.txt": "Follow up on {{ total }}",
}


def write_template_set(root: Path, kind: str, name: str, language: str, **parts: str) -> Path:
    """`root/kind/name/language/` with every part of `kind`; `parts` (subject_txt=...) override."""
    folder = root / kind / name / language
    folder.mkdir(parents=True, exist_ok=True)
    for part in PARTS_BY_KIND[kind]:
        text = parts.get(part.replace(".", "_"), PLAIN[part])
        (folder / part).write_text(text, encoding="utf-8")
    return folder


def shipped_templates_package(site: Path) -> Path:
    """A copy of the shipped `templates` package under `site` (to put first on PYTHONPATH, so a
    CLI run in a subprocess reads these templates); returns the package folder."""
    package = site / "templates"
    shutil.copytree(TEMPLATES_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    return package
