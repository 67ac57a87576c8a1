"""`policy check` on SMS steps: the text is rendered for the sample, and more than ten segments
is an error."""

from pathlib import Path

from activities.rendering import TEMPLATES_DIR, TemplateRenderer
from activities.template_check import sample_cases, sms_lengths, template_problems
from activities.template_source import TemplateSource
from domain.policy import parse_policy
from domain.sms import SmsEncoding


def _renderer(tmp_path: Path, text: str) -> TemplateRenderer:
    folder = tmp_path / "sms" / "long" / "en"
    folder.mkdir(parents=True)
    (folder / "message.txt").write_text(text)
    return TemplateRenderer(TemplateSource(TEMPLATES_DIR, tmp_path))


def test_a_text_over_ten_segments_is_an_error_and_the_shipped_one_fits(tmp_path: Path) -> None:
    renderer = _renderer(tmp_path, "{{ shop_name }} " + "x" * 1600)
    steps = [
        {"action": "sms", "delay": "1h"},
        {"action": "sms", "delay": "2h", "template": "long"},
    ]
    policy = parse_policy({"name": "p", "steps": steps}, "test")
    lengths = sms_lengths(policy, renderer, sample_cases()[0].checkout)
    assert lengths[1].segments == 1 and lengths[1].encoding is SmsEncoding.GSM_7
    assert lengths[2].segments == 11
    [problem] = [p for p in template_problems(policy, renderer) if "segments" in p]
    assert problem.startswith("step 2 (sms): the text for the sample checkout is 1612 characters")
