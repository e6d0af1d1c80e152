"""A local SMTP server that stores every message it receives (demo and tests).

It is a real SMTP server (aiosmtpd) on 127.0.0.1, so the pipeline's e-mail goes through
the same code path as in production; messages are kept in memory and, optionally,
saved as ``.eml`` files.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import itertools
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from pipeline.artifacts import atomic_path


@dataclass
class _Collector:
    outbox: Path | None
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    _counter: Any = field(default_factory=itertools.count)

    async def handle_DATA(self, server, session, envelope) -> str:
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        self.messages.append(msg)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        if self.outbox is not None:
            # time-ordered and unique across restarts and concurrent sinks: never overwrites a message
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
            path = self.outbox / f"message-{stamp}-{next(self._counter):03d}-{uuid.uuid4().hex[:8]}.eml"
            with atomic_path(path) as tmp:
                tmp.write_bytes(raw)
        return "250 Message accepted for delivery"


class SmtpSink:
    """``with SmtpSink() as sink: ...`` - ``sink.port``, ``sink.messages``."""

    def __init__(self, outbox: Path | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        from aiosmtpd.controller import Controller

        self.handler = _Collector(outbox)
        self.host = host
        self._controller = Controller(self.handler, hostname=host, port=port or _free_port(host))

    @property
    def port(self) -> int:
        return self._controller.port

    @property
    def messages(self) -> list[EmailMessage]:
        return self.handler.messages

    @property
    def envelopes(self) -> list[tuple[str, list[str]]]:
        return self.handler.envelopes

    def airflow_connection_uri(self) -> str:
        """An Airflow connection (``AIRFLOW_CONN_SMTP_DEFAULT``) pointing at this sink, no TLS."""
        import json

        return json.dumps({"conn_type": "smtp", "host": self.host, "port": self.port,
                           "extra": {"disable_ssl": True, "disable_tls": True}})

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
