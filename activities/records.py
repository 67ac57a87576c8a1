"""Store writes the workflow asks for outside of a step: failed-step entries and recoveries."""

from temporalio import activity

from domain.activity import ActivityType
from domain.steps import (
    RECORD_ACTIVITY,
    RECORD_RECOVERY,
    RecordActivityRequest,
    RecordRecoveryRequest,
)
from store.sql import SqlStore
from telemetry import metrics


class RecordActivities:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    @activity.defn(name=RECORD_ACTIVITY)
    async def record_activity(self, request: RecordActivityRequest) -> None:
        await self._store.record_activity(request.checkout_id, request.key, request.entry)
        entry = request.entry
        # The flow records here the email steps it ruled out or that failed for good.
        if entry.type is ActivityType.EMAIL_NOT_SENT and entry.step is not None:
            metrics.email_not_sent(entry.step, entry.reason)

    @activity.defn(name=RECORD_RECOVERY)
    async def record_recovery(self, request: RecordRecoveryRequest) -> None:
        await self._store.mark_recovered(
            request.checkout_id, request.recovered_at, request.order_id
        )
