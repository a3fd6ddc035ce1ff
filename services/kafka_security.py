"""Kafka's TLS and SASL settings (``KafkaSettings.security_protocol`` and friends) as each
client library spells them: kafka-python (topics, replay, offsets), aiokafka (the API's
publisher) and Faust (the trainer). With the default ``PLAINTEXT`` every function returns no
option at all, so the clients behave exactly as without them.

>>> from recsys_stream.settings import KafkaSettings
>>> kafka_python_options(KafkaSettings())
{}
>>> sorted(kafka_python_options(KafkaSettings(security_protocol="SASL_SSL",
...     sasl_username="trainer", sasl_password="s3cret")))
['sasl_mechanism', 'sasl_plain_password', 'sasl_plain_username', 'security_protocol']
"""

from __future__ import annotations

import ssl
from typing import Any

from recsys_stream.settings import KafkaSettings

__all__ = ["aiokafka_options", "faust_options", "kafka_python_options", "ssl_context"]


def _uses_tls(kafka: KafkaSettings) -> bool:
    return kafka.security_protocol in ("SSL", "SASL_SSL")


def _uses_sasl(kafka: KafkaSettings) -> bool:
    return kafka.security_protocol.startswith("SASL_")


def _password(kafka: KafkaSettings) -> str:
    return kafka.sasl_password.get_secret_value() if kafka.sasl_password is not None else ""


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """A client TLS context that verifies the brokers (against ``ssl_cafile`` when set)."""
    context = ssl.create_default_context(
        cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile is not None else None
    )
    if kafka.ssl_certfile is not None:
        context.load_cert_chain(
            str(kafka.ssl_certfile),
            str(kafka.ssl_keyfile) if kafka.ssl_keyfile is not None else None,
        )
    return context


def kafka_python_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments of kafka-python's clients."""
    if kafka.security_protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    if _uses_tls(kafka):
        options["ssl_context"] = ssl_context(kafka)
    if _uses_sasl(kafka):
        options |= {
            "sasl_mechanism": kafka.sasl_mechanism,
            "sasl_plain_username": kafka.sasl_username,
            "sasl_plain_password": _password(kafka),
        }
    return options


def aiokafka_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments of aiokafka's clients."""
    return kafka_python_options(kafka)  # aiokafka spells them the same way


def faust_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments of ``faust.App`` (its ``broker_credentials``)."""
    if kafka.security_protocol == "PLAINTEXT":
        return {}
    import faust

    context = ssl_context(kafka) if _uses_tls(kafka) else None
    if _uses_sasl(kafka):
        credentials: Any = faust.SASLCredentials(
            username=kafka.sasl_username,
            password=_password(kafka),
            mechanism=kafka.sasl_mechanism,
            ssl_context=context,
        )
    else:
        credentials = faust.SSLCredentials(context)
    return {"broker_credentials": credentials}
