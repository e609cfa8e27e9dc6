"""The MES stream: every sealed unit report published to HTTP endpoints or MQTT topics.

:mod:`.targets` parses the ``[report] publish`` addresses, :mod:`.spool` keeps the pending
messages on disk (one folder per station and target), :mod:`.senders` delivers one message
(HTTP POST with urllib, MQTT QoS 1 with paho-mqtt) and :mod:`.publisher` ties them to the
station's event stream with one background thread per station (docs/recipes.md, "Publishing").
"""
