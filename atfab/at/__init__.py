"""The AT protocol side: client, reply framing, response parsers, typed errors, module MAC.

``atfab.at.client.AtClient`` is the entry point; :mod:`atfab.at.framing` and
:mod:`atfab.at.parse` are pure parsers; :mod:`atfab.at.helpers` holds the typed command helpers.
"""

from .client import AtClient
from .errors import AtBusy, AtError, AtResponseError, AtTimeout, LinkLost

__all__ = ["AtClient", "AtError", "AtBusy", "AtResponseError", "AtTimeout", "LinkLost"]
