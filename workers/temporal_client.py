"""Connecting to Temporal with the settings, and the one data converter every part must share."""

import dataclasses

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes

from codec.payload_codec import AesGcmCodec, parse_codec_keys
from telemetry import tracing
from workers.metrics_runtime import metrics_runtime
from workers.settings import Settings

DATA_CONVERTER = pydantic_data_converter
"""The unencrypted converter: for histories recorded without encryption (replay tests) and for
setups without CHECKOUT_RECOVERY_CODEC_KEYS. Connected parts use data_converter_for(settings)."""


def data_converter_for(settings: Settings) -> DataConverter:
    """DATA_CONVERTER, with AES-GCM payload encryption when codec keys are configured.

    Workers, the API and the CLI must all use this one: a part without the codec can neither read
    what the others wrote nor write what they can read.

    With encryption on, failure messages and stack traces move into the failure's encoded
    attributes, which go through the codec too: an exception text may quote buyer data (an SMTP
    refusal names the recipient), and Temporal stores failure messages in plain text otherwise.
    """
    codec = codec_from_settings(settings)
    if codec is None:
        return DATA_CONVERTER
    return dataclasses.replace(
        DATA_CONVERTER,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    """`lazy`: connect on first use, so that a part that can work without Temporal for a while
    (the API, which keeps what it is told in the store) starts while Temporal is down."""
    api_key = settings.temporal_api_key
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=api_key.get_secret_value() if api_key else None,
        tls=settings.temporal_tls_config(),
        data_converter=data_converter_for(settings),
        lazy=lazy,
        # Tracing's interceptor when the process traces (telemetry/tracing.py): on the client,
        # it is carried to the workers made from it as well.
        interceptors=tracing.current().client_interceptors(),
        # The process's Prometheus runtime when it started one; the SDK's default otherwise.
        runtime=metrics_runtime(),
    )


def codec_from_settings(settings: Settings) -> "AesGcmCodec | None":
    """The codec the settings configure; None when no keys are set (payloads stay plain).

    Raises ValueError naming the faulty entry when the keys are malformed.
    """
    if settings.codec_keys is None:
        return None
    text = settings.codec_keys.get_secret_value()
    if not text.strip():
        return None
    return AesGcmCodec(parse_codec_keys(text))
