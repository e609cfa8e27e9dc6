"""Base layer: typed errors and the exit-code table, atomic writes, TOML input files, firmware
profiles, the private-key guard, shipped folders, measurements, MAC text and esptool's logger per port.

Imports nothing else of atfab (docs/DESIGN.md, "Layers and packages").
"""
