"""Certificate rotation on one deployed module over AT+SYSMFG (docs/rotation.md).

:mod:`~atfab.rotation.device` reads and writes the items of a slot, :mod:`~atfab.rotation.journal`
resolves interrupted rotations from the journal, :mod:`~atfab.rotation.inventory` reads
inventory files, :mod:`~atfab.rotation.results` holds the result types. The fleet driver
(recipe, ledger, reports, one thread per port) is :mod:`atfab.station.fleet`.
"""
