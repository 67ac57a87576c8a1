"""Policy files: durations, validation messages that name the step and the field."""

import tomllib
from datetime import timedelta

import pytest

from domain.durations import format_duration, parse_duration
from domain.errors import InvalidInputError
from domain.policy import RecoveryPolicy, parse_policy


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h30m", 5400), ("3d", 259200), ("2w", 1209600), ("0s", 0)],
)
def test_durations_parse_and_format_back(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert parse_duration(format_duration(timedelta(seconds=seconds))) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "1", "1x", "h", "1h-5m", "one hour"])
def test_bad_durations_say_how_to_write_one(text):
    with pytest.raises(ValueError, match="write it like"):
        parse_duration(text)


def _problems(toml: str) -> list[str]:
    with pytest.raises(InvalidInputError) as raised:
        parse_policy(tomllib.loads(toml), "test.toml")
    assert "test.toml" in str(raised.value)
    return raised.value.problems


GOOD = """
name = "t"
[[steps]]
delay = "1h"
action = "email"
template = "reminder"
"""


def test_a_good_policy_parses():
    policy = parse_policy(tomllib.loads(GOOD), "t")
    assert policy.steps[0].delay == timedelta(hours=1)
    assert policy.listen_window == timedelta(days=7)


def test_a_policy_survives_the_round_trip_through_a_workflow_payload():
    policy = parse_policy(tomllib.loads(GOOD), "t")
    assert RecoveryPolicy.model_validate_json(policy.model_dump_json()) == policy


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            '[[steps]]\ndelay = "2h"\naction = "email"\ntempalte = "x"',
            "step 2 (email): tempalte: Extra inputs",
        ),
        ('[[steps]]\ndelay = "2h"\naction = "email"', "step 2 (email): template: Field required"),
        (
            '[[steps]]\ndelay = "soon"\naction = "email"\ntemplate = "x"',
            "step 2 (email): delay: 'soon' is not a duration",
        ),
        ('[[steps]]\ndelay = "2h"\naction = "task"', "step 2 (task): assignee: Field required"),
        (
            '[[steps]]\ndelay = "2h"\naction = "notification"\nurl = "nope"',
            "step 2 (notification): url:",
        ),
        ('[[steps]]\ndelay = "2h"\naction = "fax"', "step 2: Input tag 'fax' found using 'action'"),
        (
            '[[steps]]\ndelay = "30m"\naction = "email"\ntemplate = "x"',
            "step 2 is due before step 1",
        ),
        (
            '[[steps]]\ndelay = "2h"\naction = "email"\ntemplate = "../etc"',
            "step 2 (email): template: '../etc' is not a template name",
        ),
    ],
)
def test_bad_steps_are_named(extra, expected):
    problems = _problems(GOOD + extra)
    assert any(expected in p for p in problems), problems


def test_unknown_top_level_key():
    problems = _problems('colour = "red"\n' + GOOD)
    assert problems == ["colour: Extra inputs are not permitted"]


def test_a_policy_needs_steps():
    assert _problems('name = "x"\nsteps = []')[0].startswith(
        "steps: List should have at least 1 item"
    )
