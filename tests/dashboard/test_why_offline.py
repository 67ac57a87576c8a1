"""The checkout page's "why" when Temporal cannot be asked: it still has an answer, and says so."""

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from temporalio.client import Client

from api.dashboard.why import why_view
from domain.activity import ActivityEntry, ActivityType
from domain.checkout import FlowState
from domain.policy import parse_policy
from tests.support import sample_checkout

ABANDONED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICY = parse_policy(
    {
        "name": "t",
        "frequency_cap": {"window": "0s"},
        "steps": [
            {"delay": "1h", "action": "email", "template": "reminder"},
            {"delay": "2h", "action": "email", "template": "last_chance"},
        ],
    },
    "t",
)


def _checkout(**update: Any) -> Any:
    entries = [ActivityEntry(type=ActivityType.SCHEDULED, created_date=ABANDONED)]
    return sample_checkout().model_copy(
        update={"id": "c-why", "created_date": ABANDONED, "activities": entries} | update
    )


class _BrokenClient:
    """A client whose connection broke: every call raises."""

    def get_workflow_handle(self, *_: object, **__: object) -> object:
        raise RuntimeError("connection reset")


async def test_without_a_client_the_page_says_temporal_was_not_asked() -> None:
    why = await why_view(None, "c-why", _checkout(), link="x", configured=POLICY, now=ABANDONED)
    assert (why.state, why.temporal_status) == ("unknown", "UNREACHABLE")
    assert why.problem is not None and "no Temporal client" in why.problem
    assert why.history is None and why.history_problem is not None
    # The configured policy still gives the next step, from the checkout's createdDate.
    assert why.next_step is not None
    assert (why.next_step.number, why.next_step.due) == (1, ABANDONED + timedelta(hours=1))
    assert why.next_due_local.endswith(POLICY.time_zone)


async def test_a_broken_connection_still_renders_and_names_the_error() -> None:
    broken = cast(Client, _BrokenClient())
    why = await why_view(broken, "c-why", _checkout(), link="x", configured=POLICY)
    assert why.temporal_status == "UNREACHABLE"
    assert why.problem == "Temporal did not answer (RuntimeError)"


async def test_a_pending_hand_off_says_what_it_waits_for() -> None:
    checkout = _checkout(flow_state=FlowState.PENDING)
    why = await why_view(None, "c-why", checkout, link="x", configured=POLICY)
    assert why.state == "pending hand-off"
    assert "waits for Temporal" in why.state_detail
