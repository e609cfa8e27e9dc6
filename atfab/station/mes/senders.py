"""Deliver one message to one target: HTTP POST (urllib) or MQTT publish at QoS 1 (paho-mqtt).

A sender returns when the target acknowledged the message (HTTP 2xx; MQTT PUBACK) and raises
:class:`DeliveryFailed` otherwise: :class:`Rejected` when retrying cannot help (HTTP 4xx other
than 408/429), plain :class:`DeliveryFailed` (target down, timeout, 5xx) to retry later.
Delivery is at least once: a message whose acknowledgement was lost is sent again; the
message ``id`` (also the HTTP ``Idempotency-Key``) lets the receiver drop the repeat.
"""

from __future__ import annotations

import base64
import threading
import urllib.error
import urllib.request
from typing import Protocol

import paho.mqtt.client as mqtt

from .targets import Target

RETRY_HTTP = (408, 425, 429)


class DeliveryFailed(Exception):
    """The target did not take the message (try again later)."""


class Rejected(DeliveryFailed):
    """The target refused the message for good (it is moved aside, not retried)."""


class Sender(Protocol):
    def send(self, body: bytes, message_id: str) -> None: ...

    def close(self) -> None: ...


class HttpSender:
    """``POST`` the message as ``application/json``; 2xx is delivered."""

    def __init__(self, target: Target, *, timeout: float = 10.0, user_agent: str = "atfab") -> None:
        self.target = target
        self.timeout = timeout
        self.user_agent = user_agent

    def send(self, body: bytes, message_id: str) -> None:
        t = self.target
        headers = {"Content-Type": "application/json", "Idempotency-Key": message_id, "User-Agent": self.user_agent}
        if t.username is not None:
            token = base64.b64encode(f"{t.username}:{t.password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        url = f"{t.scheme}://{t.host}:{t.port}{t.path}"
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            what = f"{t.shown} answered HTTP {exc.code} {exc.reason}"
            if 400 <= exc.code < 500 and exc.code not in RETRY_HTTP:
                raise Rejected(what) from None
            raise DeliveryFailed(what) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryFailed(f"{t.shown}: {reason}") from None

    def close(self) -> None:
        pass


class MqttSender:
    """Publish to the target's topic at QoS 1 over one connection, reconnecting after a failure."""

    def __init__(self, target: Target, *, client_id: str, timeout: float = 10.0, keepalive: int = 30) -> None:
        self.target = target
        self.client_id = client_id
        self.timeout = timeout
        self.keepalive = keepalive
        self._client: mqtt.Client | None = None

    def _connect(self) -> mqtt.Client:
        t = self.target
        connected = threading.Event()
        outcome: list[object] = []

        def on_connect(client: mqtt.Client, userdata: object, flags: object, reason: object,
                       properties: object = None) -> None:
            outcome.append(reason)
            connected.set()

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
        if t.username is not None:
            client.username_pw_set(t.username, t.password)
        client.on_connect = on_connect
        try:
            client.connect(t.host, t.port, keepalive=self.keepalive)
        except (OSError, ValueError) as exc:
            raise DeliveryFailed(f"{t.shown}: {exc}") from None
        client.loop_start()
        if not connected.wait(self.timeout) or getattr(outcome[0], "is_failure", False):
            why = outcome[0] if outcome else f"no CONNACK within {self.timeout:g} s"
            self._drop(client)
            raise DeliveryFailed(f"{t.shown}: connection refused ({why})")
        return client

    @staticmethod
    def _drop(client: mqtt.Client) -> None:
        try:
            client.disconnect()
        finally:
            client.loop_stop()

    def send(self, body: bytes, message_id: str) -> None:
        if self._client is None:
            self._client = self._connect()
        try:
            info = self._client.publish(self.target.path, body, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise DeliveryFailed(f"{self.target.shown}: {mqtt.error_string(info.rc)}")
            info.wait_for_publish(self.timeout)
            if not info.is_published():
                raise DeliveryFailed(f"{self.target.shown}: no PUBACK within {self.timeout:g} s")
        except (DeliveryFailed, RuntimeError, ValueError, OSError) as exc:
            self.close()
            if isinstance(exc, DeliveryFailed):
                raise
            raise DeliveryFailed(f"{self.target.shown}: {exc}") from None

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            self._drop(client)


def sender_for(target: Target, *, client_id: str, timeout: float = 10.0) -> Sender:
    """The sender of a target's scheme."""
    if target.scheme == "mqtt":
        return MqttSender(target, client_id=client_id, timeout=timeout)
    return HttpSender(target, timeout=timeout)


__all__ = ["DeliveryFailed", "Rejected", "Sender", "HttpSender", "MqttSender", "sender_for"]
