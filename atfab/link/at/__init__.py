"""The AT protocol side: client, reply framing, response parsers, typed errors, module MAC.

``atfab.link.at.client.AtClient`` is the entry point; :mod:`atfab.link.at.framing` and
:mod:`atfab.link.at.parse` are pure parsers; :mod:`atfab.link.at.helpers` holds the typed command helpers.
"""

from .client import AtClient
from .errors import AtBusy, AtError, AtResponseError, AtTimeout, LinkLost

__all__ = ["AtClient", "AtError", "AtBusy", "AtResponseError", "AtTimeout", "LinkLost"]
