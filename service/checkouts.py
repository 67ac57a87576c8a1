"""What services and operators do with checkouts: report, update, recover, cancel, erase, read.

Each operation is one store transaction that writes the change together with the command that
must reach the checkout's flow (store.flow_commands), then hands the command to Temporal at once
(service.handoff). When Temporal does not confirm in time, the change is still accepted: the
workers' hand-off delivers it later, and the checkout says `flowState: PENDING` until then. An
email or staff step re-reads the store right before its side effect, so it already sees a
recovery whose signal is still on its way.

Shops: what a request does names its shop (`shop_id`, from api.auth): reads and the checks before
a change put it in the store's statement, so another shop's checkout is not found. The engine's
own calls (a flow, the reconciler, an operator by our id) may leave it out: our ids are unique
across shops.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from temporalio.client import Client, WorkflowHandle

from domain.activity import ActivityEntry, ActivityType
from domain.checkout import AbandonedCheckout, BuyerIdentity, CheckoutStatus, FlowState
from domain.flow import RecoveryInput, workflow_id_for
from domain.policy import RecoveryPolicy
from domain.query import CheckoutPage, CheckoutQuery
from domain.schedule import in_holdout
from domain.shops import DEFAULT_SHOP
from service.handoff import Handoff
from store.flow_commands import FlowCommand, NewCommand, start_command
from store.sql import SqlStore
from telemetry import metrics
from telemetry.log_context import checkout_logged

logger = logging.getLogger(__name__)

# A fixed namespace for deriving ids: the same shop checkout always maps to the same abandoned
# checkout id, so a repeated report can never start a second flow.
_ID_NAMESPACE = uuid.UUID("6f1c1c9e-4b9f-4d61-9a53-2c1e0f3b7a10")


class CheckoutNotFoundError(LookupError):
    def __init__(self, checkout_id: str, message: str | None = None) -> None:
        super().__init__(message or f"no abandoned checkout with id {checkout_id!r}")
        self.checkout_id = checkout_id


class CheckoutIdTakenError(LookupError):
    """A report gave our id (`_id`) of a checkout that another shop holds."""

    def __init__(self, checkout_id: str) -> None:
        super().__init__(f"the id {checkout_id!r} is taken; report the checkout without `_id`")
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
    flow_state: FlowState = FlowState.STARTED
    """PENDING when Temporal has not confirmed the flow's start (or latest change) yet."""
    stored: AbandonedCheckout | None = None
    """The checkout as the store holds it after the report."""


@dataclass(frozen=True)
class BuyerRecovery:
    """What `recover_buyer` did."""

    recovered: AbandonedCheckout | None
    """The buyer's checkout marked recovered with the order; None when none was open."""
    stopped: list[str]
    """The buyer's other open checkouts, stopped (stopReason buyer_purchased)."""


def derive_checkout_id(checkout: AbandonedCheckout, shop_id: str = DEFAULT_SHOP) -> str:
    """Our id of a shop's checkout, the same for every report of it. The `default` shop's ids
    are derived as before shops existed (existing checkouts and flows keep theirs); any other
    shop's name is part of the derivation, so two shops' checkoutId never collide. The shop id
    is a slug, never PII, and the uuid5 shows neither."""
    if checkout.id:
        return checkout.id
    source = (
        f"checkout:{checkout.checkout_id}" if checkout.checkout_id else f"cart:{checkout.cart_id}"
    )
    if shop_id != DEFAULT_SHOP:
        source = f"shop:{shop_id}:{source}"
    return str(uuid.uuid5(_ID_NAMESPACE, source))


def flow_start(
    checkout: AbandonedCheckout,
    policy: RecoveryPolicy,
    reported_at: datetime,
    *,
    publish_search_attributes: bool,
) -> NewCommand:
    """The command that starts a checkout's flow: the workflow's input, delays counted from the
    checkout's createdDate (the reconciler starts late flows with it too)."""
    assert checkout.created_date is not None
    if checkout.activities:  # the flow keeps its own entries; the store's are not its input
        checkout = checkout.model_copy(update={"activities": []})
    return start_command(
        RecoveryInput(
            checkout=checkout,
            policy=policy,
            abandoned_at=checkout.created_date,
            reported_at=reported_at,
            publish_search_attributes=publish_search_attributes,
        )
    )


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
        self.search_attributes = search_attributes
        """Whether flows publish their status and step (the namespace has them registered)."""
        self.handoff = Handoff(client, store.commands, task_queue)

    @property
    def store(self) -> SqlStore:
        return self._store

    @property
    def client(self) -> Client:
        return self._client

    async def report(
        self,
        checkout: AbandonedCheckout,
        policy: RecoveryPolicy,
        now: datetime | None = None,
        *,
        shop_id: str = DEFAULT_SHOP,
    ) -> ReportOutcome:
        """Record an abandoned checkout and start its flow, once.

        Reporting it again starts nothing: a changed snapshot replaces the stored one (and
        reaches the running flow), an unchanged one changes nothing.
        """
        now = now or datetime.now(UTC)
        checkout_id = derive_checkout_id(checkout, shop_id)
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
        abandoned_at = checkout.created_date
        publish = self.search_attributes

        def start() -> NewCommand:
            return flow_start(checkout, policy, now, publish_search_attributes=publish)

        reported = await self._store.save_reported(
            checkout,
            now,
            start=start,
            holdout=in_holdout(checkout_id, policy.holdout_percent),
            attribution_window=policy.attribution_window,
            on_purchase=policy.on_purchase,
            shop_id=shop_id,
        )
        workflow_id = workflow_id_for(checkout_id)
        if not reported.new and reported.other_shop:
            metrics.report_received("refused", "invalid")
            raise CheckoutIdTakenError(checkout_id)
        if not reported.new:
            if reported.erased:
                metrics.report_received("refused", "erased")
                raise CheckoutErasedError(checkout_id)
            metrics.report_received("repeated")
            current = reported.current
            if reported.changed:
                state = await self._deliver([checkout_id])
                if current is not None:
                    current = current.model_copy(update={"flow_state": state})
            state = current.flow_state if current and current.flow_state else FlowState.STARTED
            return ReportOutcome(
                checkout_id, workflow_id, new=False, flow_state=state, stored=current
            )
        metrics.report_received("new")
        written = [reported.start] if reported.start is not None else []
        state = await self._deliver([checkout_id], written=written)
        # The record as the store now holds it, without reading it back.
        stored = checkout.model_copy(
            update={
                "created_date": abandoned_at.astimezone(UTC),
                "updated_date": (checkout.updated_date or now).astimezone(UTC),
                "flow_state": state,
                "activities": [ActivityEntry(type=ActivityType.SCHEDULED, created_date=now)],
            }
        )
        return ReportOutcome(checkout_id, workflow_id, new=True, flow_state=state, stored=stored)

    async def update(
        self,
        checkout: AbandonedCheckout,
        now: datetime | None = None,
        *,
        shop_id: str = DEFAULT_SHOP,
    ) -> str:
        """Replace what later steps show (items, prices, address) for a checkout still abandoned."""
        now = now or datetime.now(UTC)
        checkout_id = derive_checkout_id(checkout, shop_id)
        if checkout.id:
            await self._require(checkout_id, shop_id)  # our id given: it must be this shop's
        snapshot = checkout.model_copy(update={"id": checkout_id, "updated_date": now})
        if await self._store.update_snapshot(snapshot, now):
            await self._deliver([checkout_id])
        else:
            await self._require(checkout_id, shop_id)  # unknown: an error; else nothing
        return checkout_id

    async def recover(
        self,
        checkout_id: str,
        order_id: str | None = None,
        recovered_at: datetime | None = None,
        *,
        shop_id: str | None = None,
    ) -> AbandonedCheckout:
        """Mark the checkout recovered and stop its flow (and, unless its policy says
        on_purchase = stop_checkout, the buyer's other open flows); calling it twice is
        harmless. `shop_id`: only when it is that shop's checkout (a request's)."""
        recovered_at = recovered_at or datetime.now(UTC)
        if shop_id is not None:
            await self._require(checkout_id, shop_id, with_activities=False)
        recovery = await self._store.mark_recovered(checkout_id, recovered_at, order_id)
        if recovery is not None:
            await self._deliver([checkout_id, *recovery.stopped])
        return await self._require(checkout_id, shop_id)

    async def recover_by_reference(
        self,
        *,
        shop_id: str,
        checkout_id: str | None,
        cart_id: str | None,
        order_id: str | None = None,
        recovered_at: datetime | None = None,
    ) -> AbandonedCheckout:
        """`recover` for services that know only the shop's checkoutId or cartId."""
        found = await self._store.find_id(shop_id=shop_id, checkout_id=checkout_id, cart_id=cart_id)
        if found is None:
            reference = f"checkoutId {checkout_id!r}" if checkout_id else f"cartId {cart_id!r}"
            raise CheckoutNotFoundError(
                checkout_id or cart_id or "", f"no abandoned checkout with {reference}"
            )
        return await self.recover(found, order_id, recovered_at, shop_id=shop_id)

    async def recover_buyer(
        self,
        buyer: BuyerIdentity,
        order_id: str | None = None,
        recovered_at: datetime | None = None,
        *,
        shop_id: str,
    ) -> BuyerRecovery:
        """For shops that know the buyer's order but not the checkout it came from: the buyer's
        most recently updated open checkout in the shop is recovered with the order, every
        other open one there is stopped (whatever the policies' on_purchase says: the shop
        reported a purchase)."""
        recovered_at = recovered_at or datetime.now(UTC)
        recovered_id, stopped = await self._store.recover_buyer(
            buyer, order_id, recovered_at, shop_id=shop_id
        )
        if recovered_id is None:
            return BuyerRecovery(None, [])
        await self._deliver([recovered_id, *stopped])
        return BuyerRecovery(await self._require(recovered_id, shop_id), stopped)

    async def unsubscribe(self, checkout_id: str, now: datetime | None = None) -> list[str]:
        """The buyer of `checkout_id` wants no more recovery email from its shop: suppress their
        address for every checkout of that shop and tell each of their open flows there.
        Returns the checkouts told.

        The suppression is committed first, so an email step already under way finds it in the
        transaction that would claim its send.
        """
        found = await self._store.get_with_shop(checkout_id)
        if found is None:
            # Erased or unknown: no address to suppress, and no flow that could mail it.
            raise CheckoutNotFoundError(checkout_id)
        checkout, shop_id = found
        email = checkout.buyer_info.email
        if not email:
            return []
        flows = await self._store.unsubscribe(email, now or datetime.now(UTC), shop_id=shop_id)
        metrics.unsubscribed()
        await self._deliver(flows)
        return flows

    async def delete(
        self, checkout_id: str, now: datetime | None = None, *, shop_id: str | None
    ) -> None:
        """Stop the flow and erase the buyer's personal data; the anonymised row stays.

        The store is erased first, so a step running meanwhile finds nothing to send. Then the
        workflow execution is deleted from Temporal (which terminates it when still running):
        its history holds the reported checkout, personal data included. `shop_id`: only that
        shop's checkout (a request's); None: by our id alone (an operator).
        """
        if not await self._store.is_in_shop(checkout_id, shop_id):
            raise CheckoutNotFoundError(checkout_id)
        if not await self._store.erase(checkout_id, now or datetime.now(UTC)):
            if not await self._store.is_erased(checkout_id):
                raise CheckoutNotFoundError(checkout_id)
            return  # erased before; its delete command is delivered or on its way
        await self._deliver([checkout_id])

    async def cancel(
        self, checkout_id: str, now: datetime | None = None, *, shop_id: str | None = None
    ) -> None:
        """Stop a flow without marking the checkout recovered (no further steps run);
        stopReason says `cancelled`. Harmless to repeat. `shop_id` as for `recover`."""
        await self._require(checkout_id, shop_id, with_activities=False)
        if await self._store.stop(checkout_id, now or datetime.now(UTC)):
            await self._deliver([checkout_id])

    async def get(
        self, checkout_id: str, *, shop_id: str | None, with_activities: bool = True
    ) -> AbandonedCheckout:
        """The checkout; not found when it is not `shop_id`'s (None: by our id alone, for the
        engine and a signed link, whose id we made)."""
        found = await self._store.get(checkout_id, with_activities=with_activities, shop_id=shop_id)
        if found is None:
            raise CheckoutNotFoundError(checkout_id)
        return found

    async def query(self, query: CheckoutQuery, *, shop_id: str) -> CheckoutPage:
        return await self._store.query(query, shop_id=shop_id)

    async def record_click(self, checkout_id: str, step: int | None, at: datetime) -> None:
        """A buyer followed a recovery link (for attribution)."""
        await self._store.record_click(checkout_id, step, at)

    def handle(self, checkout_id: str) -> WorkflowHandle[object, object]:
        return self._client.get_workflow_handle(workflow_id_for(checkout_id))

    async def _require(
        self, checkout_id: str, shop_id: str | None, *, with_activities: bool = True
    ) -> AbandonedCheckout:
        return await self.get(checkout_id, shop_id=shop_id, with_activities=with_activities)

    async def _deliver(
        self, checkout_ids: list[str], written: list[FlowCommand] | None = None
    ) -> FlowState:
        if not checkout_ids:
            return FlowState.STARTED
        # Log lines about one checkout's delivery name it (telemetry.log_context).
        with checkout_logged(checkout_ids[0] if len(checkout_ids) == 1 else None):
            try:
                delivered = await self.handoff.deliver_now(checkout_ids, written=written)
            except Exception:
                # The change is committed with its command: the workers deliver it later.
                logger.warning(
                    "Handing %d command(s) to Temporal failed; left to the workers",
                    len(checkout_ids),
                    exc_info=True,
                )
                delivered = False
        return FlowState.STARTED if delivered else FlowState.PENDING
