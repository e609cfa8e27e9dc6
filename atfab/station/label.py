"""Unit labels: a QR code with the unit's serial and MAC beside text lines from the recipe.

A recipe's ``[label]`` (:class:`~atfab.station.recipe_spec.LabelSpec`) names the formats (``png``,
``svg``, ``zpl`` for Zebra-compatible label printers), the QR payload and text-line templates
(placeholders :data:`LABEL_FIELDS`), the label size and the printer resolution. The QR symbol of
PNG and SVG is encoded by segno; a ZPL label asks the printer to encode it (``^BQ``). Text that
is too long for the label is set smaller until it fits.

:class:`LabelWriter` is an event subscriber: on a ``report`` event whose final outcome is PASS
it writes the unit's labels next to its report (``<report name>.label.<format>``, each written
atomically) and announces them with a ``label`` event (``ok``, or ``error`` with the reason). A
unit that did not PASS never gets a label.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import segno
from PIL import Image, ImageDraw, ImageFont

from ..core.fsutil import atomic_write
from ..pki.issue import identity_values, render
from .events import Event, EventBus
from .label_template import DPIS, LABEL_FIELDS, LABEL_FORMATS, template_fields
from .recipe_spec import LabelSpec

_MARGIN_MM = 1.5
_QUIET_MODULES = 2          # quiet zone around the QR symbol, in modules
_CHAR_WIDTH = 0.56          # a character's width per text height (the fonts' widest digits and capitals)


def label_values(*, serial: str, mac: str, module: str, recipe: str, chip: str, when: datetime) -> dict[str, str]:
    """The placeholder values of one unit's label."""
    values = identity_values(serial=serial, mac=mac, module=module, recipe=recipe)
    return {**values, "chip": chip, "date": when.astimezone(timezone.utc).strftime("%Y-%m-%d")}


@dataclass(frozen=True)
class LabelContent:
    """What one label says: the QR payload and the text lines."""

    qr: str
    lines: tuple[str, ...]


def label_content(spec: LabelSpec, values: dict[str, str]) -> LabelContent:
    """Fill the templates of ``spec`` with ``values``."""
    return LabelContent(render(spec.qr, values, field="label.qr"),
                        tuple(render(line, values, field=f"label.lines[{i}]") for i, line in enumerate(spec.lines)))


@dataclass(frozen=True)
class _Layout:
    """Where things go, in printer dots."""

    width: int
    height: int
    margin: int
    qr_x: int
    qr_y: int
    module: int             # dots per QR module
    modules: int            # QR modules per side (with the quiet zone)
    text_x: int
    text_width: int
    line_height: int
    text_sizes: tuple[int, ...]


def _layout(spec: LabelSpec, content: LabelContent) -> tuple[_Layout, segno.QRCode]:
    dots = spec.dpi / 25.4
    width, height = round(spec.width_mm * dots), round(spec.height_mm * dots)
    margin = round(_MARGIN_MM * dots)
    qr = segno.make(content.qr, error="m", micro=False)
    modules = qr.symbol_size(scale=1, border=_QUIET_MODULES)[0]
    side = min(height - 2 * margin, width // 2)
    module = max(1, side // modules)
    qr_side = module * modules
    text_x = margin + qr_side + margin
    text_width = max(1, width - text_x - margin)
    rows = max(len(content.lines), 3)
    line_height = (height - 2 * margin) // rows
    sizes = tuple(max(6, min(int(line_height * 0.8), int(text_width / (_CHAR_WIDTH * max(len(t), 1)))))
                  for t in content.lines)
    return _Layout(width, height, margin, margin, (height - qr_side) // 2, module, modules, text_x, text_width,
                   line_height, sizes), qr


def _line_y(lay: _Layout, i: int, n: int) -> int:
    top = (lay.height - lay.line_height * n) // 2
    return top + i * lay.line_height + (lay.line_height - lay.text_sizes[i]) // 2


def to_png(spec: LabelSpec, content: LabelContent) -> bytes:
    """The label as a 1-bit PNG at the printer's resolution."""
    lay, qr = _layout(spec, content)
    img = Image.new("1", (lay.width, lay.height), 1)
    draw = ImageDraw.Draw(img)
    for r, row in enumerate(qr.matrix_iter(scale=1, border=_QUIET_MODULES)):
        for c, dark in enumerate(row):
            if dark:
                x, y = lay.qr_x + c * lay.module, lay.qr_y + r * lay.module
                draw.rectangle((x, y, x + lay.module - 1, y + lay.module - 1), fill=0)
    for i, text in enumerate(content.lines):
        size = lay.text_sizes[i]
        font = ImageFont.load_default(size=size)
        while size > 6 and draw.textlength(text, font=font) > lay.text_width:
            size -= 1
            font = ImageFont.load_default(size=size)
        draw.text((lay.text_x, _line_y(lay, i, len(content.lines))), text, font=font, fill=0)
    out = io.BytesIO()
    img.save(out, format="PNG", dpi=(spec.dpi, spec.dpi), optimize=True)
    return out.getvalue()


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def to_svg(spec: LabelSpec, content: LabelContent) -> bytes:
    """The label as SVG, sized in millimetres (one user unit = one printer dot)."""
    lay, qr = _layout(spec, content)
    symbol = qr.svg_inline(scale=lay.module, border=_QUIET_MODULES, dark="#000")
    symbol = symbol.replace("<svg ", f'<svg x="{lay.qr_x}" y="{lay.qr_y}" ', 1)
    texts = [f'<text x="{lay.text_x}" y="{_line_y(lay, i, len(content.lines)) + lay.text_sizes[i]}" '
             f'font-size="{lay.text_sizes[i]}">{_xml(t)}</text>'
             for i, t in enumerate(content.lines)]
    doc = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{spec.width_mm}mm" height="{spec.height_mm}mm" '
           f'viewBox="0 0 {lay.width} {lay.height}">'
           f'<rect width="{lay.width}" height="{lay.height}" fill="#fff"/>{symbol}'
           f'<g font-family="DejaVu Sans, Arial, Helvetica, sans-serif" fill="#000">{"".join(texts)}</g></svg>\n')
    return doc.encode()


def _zpl_field(text: str) -> str:
    """``text`` as ZPL field data under ``^FH`` (``_XX`` hex for ``^ ~ _`` and anything not plain ASCII)."""
    out = []
    for ch in text:
        if ch in "^~_\\" or not (32 <= ord(ch) < 127):
            out.append("".join(f"_{b:02X}" for b in ch.encode()))
        else:
            out.append(ch)
    return "".join(out)


def to_zpl(spec: LabelSpec, content: LabelContent) -> bytes:
    """The label as ZPL II (UTF-8 text, ``^CI28``) for a printer of ``spec.dpi``."""
    lay, _ = _layout(spec, content)
    quiet = _QUIET_MODULES * lay.module
    mag = max(1, min(10, lay.module))
    cmds = ["^XA", "^CI28", f"^PW{lay.width}", f"^LL{lay.height}", "^LH0,0",
            f"^FO{lay.qr_x + quiet},{lay.qr_y + quiet}^BQN,2,{mag}^FH^FDMA,{_zpl_field(content.qr)}^FS"]
    for i, text in enumerate(content.lines):
        h = lay.text_sizes[i]
        cmds.append(f"^FO{lay.text_x},{_line_y(lay, i, len(content.lines))}^A0N,{h},{h}"
                    f"^FB{lay.text_width},1,0,L^FH^FD{_zpl_field(text)}^FS")
    cmds.append("^XZ")
    return ("\n".join(cmds) + "\n").encode()


RENDERERS = {"png": to_png, "svg": to_svg, "zpl": to_zpl}


def write_labels(spec: LabelSpec, content: LabelContent, stem: Path) -> list[Path]:
    """Write every format of ``spec`` as ``<stem>.label.<format>`` (each atomically); the paths."""
    return [atomic_write(stem.with_name(f"{stem.name}.label.{fmt}"), RENDERERS[fmt](spec, content), mode=0o644)
            for fmt in spec.formats]


class LabelWriter:
    """Writes the labels of every unit that PASSes (see the module docstring)."""

    def __init__(self, spec: LabelSpec, bus: EventBus, *, recipe: str, module: str, chip: str) -> None:
        self.spec = spec
        self.bus = bus
        self._fixed = {"recipe": recipe, "module": module, "chip": chip}

    def __call__(self, ev: Event) -> None:
        data: Any = ev.data or {}
        if ev.step != "report" or ev.status != "PASS" or not data.get("report"):
            return
        report = Path(data["report"])
        try:
            values = label_values(serial=data.get("serial") or "", mac=data.get("mac") or "",
                                  when=datetime.fromtimestamp(ev.time, timezone.utc), **self._fixed)
            paths = write_labels(self.spec, label_content(self.spec, values), report.with_suffix(""))
        except Exception as exc:  # noqa: BLE001 - the unit stays PASS; the operator is told the label is missing
            self.bus.emit(Event(ev.port, ev.unit, "label", "error", detail=f"label not written: {exc}",
                                attempt_id=ev.attempt_id))
            return
        self.bus.emit(Event(ev.port, ev.unit, "label", "ok", detail=", ".join(p.name for p in paths),
                            attempt_id=ev.attempt_id))


__all__ = ["LabelWriter", "LabelContent", "label_content", "label_values", "template_fields", "to_png", "to_svg",
           "to_zpl", "write_labels", "LABEL_FIELDS", "LABEL_FORMATS", "DPIS"]
