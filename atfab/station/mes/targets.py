"""Where reports are published: ``mqtt://host[:port]/topic`` or ``http(s)://host[:port]/path``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ...core.errors import InputError

SCHEMES = ("mqtt", "http", "https")
MQTT_PORT = 1883


@dataclass(frozen=True)
class Target:
    """One publish address. ``url`` is as given (it may hold a password: never shown as is)."""

    url: str
    scheme: str
    host: str
    port: int
    path: str                      # MQTT: the topic; HTTP: the request path (with query)
    username: str | None = None
    password: str | None = None

    @property
    def shown(self) -> str:
        """The address without its password (for messages, reports and folder labels)."""
        user = f"{self.username}@" if self.username else ""
        sep = "/" if self.scheme == "mqtt" else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}{sep}{self.path}"

    @property
    def key(self) -> str:
        """A stable folder name for this target's spool (does not reveal the password)."""
        return f"{self.scheme}-{hashlib.sha256(self.url.encode()).hexdigest()[:16]}"


def parse_target(url: str, *, file: object = None, field: str = "report.publish") -> Target:
    """Parse one publish address; :class:`InputError` (file, field, what) when it is not usable."""

    def bad(message: str) -> InputError:
        return InputError(f"{message} (publish address {url!r})", file=file, field=field)

    if not isinstance(url, str) or not url.strip():
        raise bad("must be an mqtt:// or http(s):// address")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise bad(f"not an address: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise bad(f"scheme must be one of {', '.join(s + '://' for s in SCHEMES)}")
    if not parts.hostname:
        raise bad("no host")
    if scheme == "mqtt":
        topic = unquote(parts.path.lstrip("/"))
        if not topic:
            raise bad("no topic: give mqtt://host[:port]/topic/path")
        if "+" in topic or "#" in url:
            raise bad("a publish topic cannot hold the wildcards + or #")
        if parts.query or parts.fragment:
            raise bad("an MQTT address has no query or fragment")
        path, port = topic, port or MQTT_PORT
    else:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        port = port or (443 if scheme == "https" else 80)
    return Target(url.strip(), scheme, parts.hostname, port, path,
                  unquote(parts.username) if parts.username else None,
                  unquote(parts.password) if parts.password else None)


def parse_targets(urls: tuple[str, ...] | list[str], *, file: object = None,
                  field: str = "report.publish") -> tuple[Target, ...]:
    """Parse every address; the same address twice is an input error."""
    targets = []
    for i, url in enumerate(urls):
        t = parse_target(url, file=file, field=f"{field}[{i}]" if field == "report.publish" else field)
        if any(t.url == o.url for o in targets):
            raise InputError(f"{t.shown} is given twice", file=file, field=field)
        targets.append(t)
    return tuple(targets)


__all__ = ["Target", "parse_target", "parse_targets", "SCHEMES"]
