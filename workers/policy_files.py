"""Finding, reading and checking policy files. Built-in policies live in the policies/ folder."""

import tomllib
from pathlib import Path

import policies as _policies_package
from activities.rendering import TemplateRenderer
from activities.template_check import template_problems
from domain.checkout import AbandonedCheckout
from domain.errors import InvalidInputError
from domain.policy import RecoveryPolicy, parse_policy

BUILTIN_DIR = Path(_policies_package.__file__).parent


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def resolve(name_or_path: str) -> Path:
    """A built-in policy name, or the path of a TOML file."""
    builtin = BUILTIN_DIR / f"{name_or_path}.toml"
    if "/" not in name_or_path and not name_or_path.endswith(".toml") and builtin.is_file():
        return builtin
    path = Path(name_or_path)
    if not path.is_file():
        raise InvalidInputError(
            f"recovery policy {name_or_path}",
            [f"no such file, and not a built-in policy ({', '.join(builtin_names())})"],
        )
    return path


def load_policy(
    name_or_path: str,
    renderer: TemplateRenderer | None = None,
    *,
    sample: AbandonedCheckout | None = None,
) -> RecoveryPolicy:
    """Read and validate a policy; with a renderer, also check that every template it names
    exists and renders, in each of its languages, for `sample` and for edge cases (see
    activities.template_check)."""
    path = resolve(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise InvalidInputError(f"recovery policy {path}", [f"not valid TOML: {err}"]) from None
    policy = parse_policy(data, str(path))
    if renderer is not None:
        problems = [
            f"step {index + 1} ({step.action}): template: {step.template!r} lacks "
            + ", ".join(missing)
            for index, step in enumerate(policy.steps)
            if (missing := renderer.missing_parts(step.action, step.template))
        ]
        problems += template_problems(policy, renderer, sample)
        if problems:
            raise InvalidInputError(f"recovery policy {path}", problems)
    return policy
