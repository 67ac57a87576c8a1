"""What services and operators do with checkouts: report, update, recover, cancel, read.

Each operation writes the store first and then tells the workflow, so an email activity that
re-checks the store just before sending already sees a recovery still on its way to the flow.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.checkout import AbandonedCheckout, CheckoutStatus
from domain.flow import (
    STATUS_ATTRIBUTE,
    STEP_ATTRIBUTE,
    RecoveredSignal,
    RecoveryInput,
    workflow_id_for,
)
from domain.policy import RecoveryPolicy
from domain.schedule import in_holdout
from store.sql import SqlStore
from store.suppressions import abandoned_checkouts_of, suppress

logger = logging.getLogger(__name__)

# A fixed namespace for deriving ids: the same shop checkout always maps to the same abandoned
# checkout id, so a repeated report can never start a second flow.
_ID_NAMESPACE = uuid.UUID("6f1c1c9e-4b9f-4d61-9a53-2c1e0f3b7a10")
WORKFLOW_NAME = "AbandonedCheckoutWorkflow"


class CheckoutNotFoundError(LookupError):
    def __init__(self, checkout_id: str, message: str | None = None) -> None:
        super().__init__(message or f"no abandoned checkout with id {checkout_id!r}")
        self.checkout_id = checkout_id


class CheckoutErasedError(LookupError):
    """The checkout's personal data was erased; it takes no new reports."""

    def __init__(self, checkout_id: str) -> None:
        super().__init__(
            f"abandoned checkout {checkout_id!r} was deleted (its buyer's data erased); "
            "a report of it is refused so that no flow mails the buyer again"
        )
        self.checkout_id = checkout_id


@dataclass(frozen=True)
class ReportOutcome:
    checkout_id: str
    workflow_id: str
    new: bool
    """False when the checkout had been reported before."""


def derive_checkout_id(checkout: AbandonedCheckout) -> str:
    if checkout.id:
        return checkout.id
    source = (
        f"checkout:{checkout.checkout_id}" if checkout.checkout_id else f"cart:{checkout.cart_id}"
    )
    return str(uuid.uuid5(_ID_NAMESPACE, source))


class CheckoutService:
    def __init__(
        self,
        client: Client,
        store: SqlStore,
        task_queue: str,
        *,
        search_attributes: bool = False,
    ) -> None:
        self._client = client
        self._store = store
        self._task_queue = task_queue
        self._search_attributes = search_attributes
        """Whether flows publish their status and step (the namespace has them registered)."""

    @property
    def store(self) -> SqlStore:
        return self._store

    async def report(
        self, checkout: AbandonedCheckout, policy: RecoveryPolicy, now: datetime | None = None
    ) -> ReportOutcome:
        """Record an abandoned checkout and start its flow, once.

        Reporting it again starts nothing: a changed snapshot replaces the stored one (and
        reaches the running flow), an unchanged one changes nothing.
        """
        now = now or datetime.now(UTC)
        checkout_id = derive_checkout_id(checkout)
        checkout = checkout.model_copy(
            update={
                "id": checkout_id,
                "created_date": checkout.created_date or now,
                "updated_date": checkout.updated_date or now,
                "status": CheckoutStatus.ABANDONED,
                "activities": [],
            }
        )
        assert checkout.created_date is not None
        reported_at = await self._store.save_reported(
            checkout,
            now,
            holdout=in_holdout(checkout_id, policy.holdout_percent),
            attribution_window=policy.attribution_window,
        )
        flow = RecoveryInput(
            checkout=checkout,
            policy=policy,
            abandoned_at=checkout.created_date,
            reported_at=reported_at,
            publish_search_attributes=self._search_attributes,
        )
        workflow_id = workflow_id_for(checkout_id)
        new = reported_at == now
        if not new:
            if await self._store.is_erased(checkout_id):
                raise CheckoutErasedError(checkout_id)
            await self._apply_update(checkout, now)
            return ReportOutcome(checkout_id, workflow_id, new=False)
        try:
            await self._client.start_workflow(
                WORKFLOW_NAME,
                flow,
                id=workflow_id,
                task_queue=self._task_queue,
                # Running: attach to it. Closed: refuse. Either way one flow per checkout, ever.
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=self._initial_search_attributes(),
            )
        except WorkflowAlreadyStartedError:
            # Its flow has closed already: the checkout keeps its one and only flow.
            new = False
        return ReportOutcome(checkout_id, workflow_id, new=new)

    def _initial_search_attributes(self) -> TypedSearchAttributes | None:
        if not self._search_attributes:
            return None
        return TypedSearchAttributes(
            [
                SearchAttributePair(STATUS_ATTRIBUTE, "ABANDONED"),
                SearchAttributePair(STEP_ATTRIBUTE, 0),
            ]
        )

    async def update(self, checkout: AbandonedCheckout, now: datetime | None = None) -> str:
        """Replace what later steps show (items, prices, address) for a checkout still abandoned."""
        now = now or datetime.now(UTC)
        checkout_id = derive_checkout_id(checkout)
        snapshot = checkout.model_copy(update={"id": checkout_id, "updated_date": now})
        if not await self._apply_update(snapshot, now):
            await self._require(checkout_id)  # unknown: an error; recovered or same: nothing
        return checkout_id

    async def _apply_update(self, snapshot: AbandonedCheckout, now: datetime) -> bool:
        assert snapshot.id is not None
        if not await self._store.update_snapshot(snapshot, now):
            return False
        await self._signal(snapshot.id, "checkout_updated", snapshot)
        return True

    async def recover(
        self, checkout_id: str, order_id: str | None = None, recovered_at: datetime | None = None
    ) -> AbandonedCheckout:
        """Mark the checkout recovered and stop its flow; calling it twice is harmless."""
        recovered_at = recovered_at or datetime.now(UTC)
        if await self._store.mark_recovered(checkout_id, recovered_at, order_id):
            signal = RecoveredSignal(order_id=order_id, recovered_at=recovered_at)
            await self._signal(checkout_id, "recovered", signal)
        return await self._require(checkout_id)

    async def recover_by_reference(
        self,
        *,
        checkout_id: str | None,
        cart_id: str | None,
        order_id: str | None = None,
        recovered_at: datetime | None = None,
    ) -> AbandonedCheckout:
        """`recover` for services that know only the shop's checkoutId or cartId."""
        found = await self._store.find_id(checkout_id=checkout_id, cart_id=cart_id)
        if found is None:
            reference = f"checkoutId {checkout_id!r}" if checkout_id else f"cartId {cart_id!r}"
            raise CheckoutNotFoundError(
                checkout_id or cart_id or "", f"no abandoned checkout with {reference}"
            )
        return await self.recover(found, order_id, recovered_at)

    async def unsubscribe(self, checkout_id: str, now: datetime | None = None) -> list[str]:
        """The buyer of `checkout_id` wants no more recovery email: suppress their address for
        every checkout, then tell each of their running flows. Returns the flows told.

        The suppression comes first, so an email step already under way finds it in the
        transaction that would claim its send.
        """
        checkout = await self._store.get(checkout_id, with_activities=False)
        if checkout is None:
            # Erased or unknown: no address to suppress, and no flow that could mail it.
            raise CheckoutNotFoundError(checkout_id)
        email = checkout.buyer_info.email
        if not email:
            return []
        engine = self._store.engine
        await suppress(engine, email, now or datetime.now(UTC))
        flows = await abandoned_checkouts_of(engine, email)
        for flow_checkout_id in flows:
            await self._signal(flow_checkout_id, "unsubscribed", None)
        return flows

    async def delete(self, checkout_id: str, now: datetime | None = None) -> None:
        """Stop the flow and erase the buyer's personal data; the anonymised row stays.

        The store is erased first, so a step running meanwhile finds nothing to send. Then the
        workflow execution is deleted from Temporal (which terminates it when still running):
        its history holds the reported checkout, personal data included.
        """
        erased_now = await self._store.erase(checkout_id, now or datetime.now(UTC))
        # Erased before: the execution is deleted again, in case that part failed last time.
        if not erased_now and not await self._store.is_erased(checkout_id):
            raise CheckoutNotFoundError(checkout_id)
        try:
            await self._client.workflow_service.delete_workflow_execution(
                DeleteWorkflowExecutionRequest(
                    namespace=self._client.namespace,
                    workflow_execution=WorkflowExecution(workflow_id=workflow_id_for(checkout_id)),
                )
            )
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise

    async def cancel(self, checkout_id: str) -> None:
        """Stop a flow without marking the checkout recovered (no further steps run)."""
        await self._require(checkout_id)
        await self._signal(checkout_id, "cancel", None)

    async def get(self, checkout_id: str) -> AbandonedCheckout:
        return await self._require(checkout_id)

    def handle(self, checkout_id: str) -> WorkflowHandle[object, object]:
        return self._client.get_workflow_handle(workflow_id_for(checkout_id))

    async def _require(self, checkout_id: str) -> AbandonedCheckout:
        found = await self._store.get(checkout_id)
        if found is None:
            raise CheckoutNotFoundError(checkout_id)
        return found

    async def _signal(self, checkout_id: str, name: str, arg: object) -> None:
        handle = self.handle(checkout_id)
        try:
            if arg is None:
                await handle.signal(name)
            else:
                await handle.signal(name, arg)
        except RPCError as err:
            # A closed flow takes no signals; the store already holds the change.
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
            logger.info("Flow of %s already closed; %s kept in the store only", checkout_id, name)
