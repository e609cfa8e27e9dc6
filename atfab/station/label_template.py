"""What a recipe's ``[label]`` may say (checked by :mod:`atfab.station.recipe`, rendered by
:mod:`atfab.station.label`): formats, printer resolutions, template placeholders."""

from __future__ import annotations

from string import Formatter

#: Placeholders a label template may use.
LABEL_FIELDS = ("serial", "mac", "mac_hex", "module", "recipe", "chip", "date")
#: Label files: PNG and SVG images, ZPL II for Zebra-compatible label printers.
LABEL_FORMATS = ("png", "svg", "zpl")
#: Printer resolutions (dots per inch) of industrial label printers.
DPIS = (152, 203, 300, 600)


def template_fields(template: str) -> list[str]:
    """The placeholder names ``template`` uses (ValueError when its braces do not pair)."""
    return [name for _, name, _, _ in Formatter().parse(template) if name is not None]


__all__ = ["LABEL_FIELDS", "LABEL_FORMATS", "DPIS", "template_fields"]
