"""Link layer: ports and transports, the esptool flasher and the AT client (:mod:`atfab.link.at`).

Imports only :mod:`atfab.core` and :mod:`atfab.image`.
"""
