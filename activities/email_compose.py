"""The email a recovery step sends, composed by one rule: the step itself (activities.email) and
the dashboard's preview and test send (activities.email_preview) both go through it, so what an
operator previews is what the buyer gets.

Composing is the template's context (the checkout, formatted for the buyer's locale and zone), the
signed recovery and unsubscribe links, the step's coupon, the rendering, and the MIME message.
"""

from email.message import Message
from urllib.parse import quote

from activities.coupon_context import coupon_context
from activities.email_message import Sender, Unsubscribe, build_message, feedback_id
from activities.message_context import checkout_context, formatting_locale
from activities.rendering import SubjectLine, TemplateRenderer, TemplateRenderError
from domain.checkout import AbandonedCheckout
from domain.coupons import CouponProvider
from domain.links import LinkSigner
from domain.shops import DEFAULT_SHOP
from domain.steps import EmailStepRequest
from domain.variants import assign_variant


class ComposeError(Exception):
    """The step's template failed to render, or its message could not be built: it fails the
    same way on every attempt (rendering is pure)."""


class EmailComposer:
    def __init__(
        self,
        renderer: TemplateRenderer,
        sender: Sender,
        shop_name: str,
        *,
        links: LinkSigner | None = None,
        coupons: CouponProvider | None = None,
        unsubscribe_mailbox: str | None = None,
    ) -> None:
        """`coupons`: where a step's coupon comes from (the preview passes one that issues
        nothing); None: the emails carry none."""
        self.renderer = renderer
        self.sender = sender
        self.shop_name = shop_name
        self.links = links
        self.coupons = coupons
        self.unsubscribe_mailbox = unsubscribe_mailbox or f"unsubscribe@{sender.domain}"

    def with_coupons(self, coupons: CouponProvider | None) -> "EmailComposer":
        """The same composer with another coupon provider."""
        return EmailComposer(
            self.renderer,
            self.sender,
            self.shop_name,
            links=self.links,
            coupons=coupons,
            unsubscribe_mailbox=self.unsubscribe_mailbox,
        )

    async def compose(
        self,
        request: EmailStepRequest,
        checkout: AbandonedCheckout,
        to_address: str,
        message_id: str,
        *,
        shop_id: str = DEFAULT_SHOP,
    ) -> Message:
        """The step's email to `to_address` from the checkout's shop `shop_id`; raises
        ComposeError when its template fails."""
        # An A/B step's variant replaces the template, the subject or both (domain.variants).
        variant = assign_variant(request.step, request.checkout_id, request.step_index)
        template = (variant and variant.template) or request.step.template
        subject = None
        if variant is not None and variant.subject is not None:
            label = f"step {request.step_index + 1} variant {variant.name}: subject"
            subject = SubjectLine(label, variant.subject)
        language = self.renderer.resolve_language("email", template, checkout.buyer_language)
        # A de-AT buyer reading the German template sees Austrian money ("€ 89,90").
        locale = formatting_locale(checkout.buyer_language, language)
        context = checkout_context(
            checkout, self.shop_name, locale=locale, time_zone=request.time_zone
        )
        unsubscribe = None
        if self.links is not None:
            # The buyer comes back through our signed redirect, which records the click. The
            # link depends only on the step and its due time, so a retry renders the same one.
            context["checkout_url"] = self.links.url(
                request.checkout_id, request.step_index + 1, request.at
            )
            token = self.links.unsubscribe_token(request.checkout_id)
            unsubscribe = Unsubscribe(
                url=self.links.unsubscribe_url(request.checkout_id),
                mailto=f"mailto:{self.unsubscribe_mailbox}?subject=unsubscribe%20{quote(token)}",
            )
            context["unsubscribe_url"] = unsubscribe.url
        if request.step.coupon is not None and self.coupons is not None:
            # Keyed by the step: a retry after a failed send shows the same code.
            coupon = await self.coupons.issue(
                request.key, request.checkout_id, request.step.coupon, checkout.currency, request.at
            )
            context["coupon"] = coupon_context(coupon, locale, request.time_zone)
        # Rendering is pure: a template that fails now fails on every retry, so the step gives
        # up at once and records template_error.
        try:
            # `language` is already the resolved folder: resolving it again would cost a stat.
            rendered = self.renderer.render_email_in(template, language, context, subject)
            return build_message(
                rendered,
                sender=self.sender,
                to_address=to_address,
                to_name=context["buyer_name"] if isinstance(context["buyer_name"], str) else None,
                message_id=message_id,
                sent_at=request.at,
                unsubscribe=unsubscribe,
                feedback=feedback_id(request.step_index + 1, template, shop_id),
            )
        except TemplateRenderError as err:
            raise ComposeError(f"template {err}") from err
        except (ValueError, TypeError, LookupError) as err:
            raise ComposeError(f"message not built: {type(err).__name__}: {err}") from err
