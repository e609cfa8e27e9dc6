"""Unit labels: written next to the report of every unit that PASSes, never for a FAIL; the
recipe's [label] checked with one-line errors; PNG / SVG / ZPL content."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import segno
from click.testing import CliRunner
from PIL import Image

from atfab.cli import main
from atfab.station.label import label_content, label_values, to_png, to_zpl
from atfab.station.recipe import load_recipe
from atfab.station.recipe_spec import LabelSpec
from atfab.station.station import run_sim
from atfab.sim.chip import derive_mac
from tests.conftest import run_with_timeout
from tests.station_support import load_ca, write_recipe

LABEL = """
[label]
formats = ["png", "svg", "zpl"]
qr = "S/N:{serial};MAC:{mac}"
lines = ["{module}", "S/N {serial}", "MAC {mac}", "{date}"]
width_mm = 50
height_mm = 25
dpi = 203
"""


def _recipe(tmp: Path, label: str = LABEL, verify: str = "") -> Path:
    path = write_recipe(tmp)
    text = path.read_text().replace("[verify]\n", f"[verify]\n{verify}\n", 1) + label
    path.write_text(text)
    return path


def test_pass_gets_labels_next_to_its_report_and_fail_none(tmp_path: Path) -> None:
    macs = [derive_mac(f"0:{i}").hex(":") for i in range(2)]
    recipe = load_recipe(_recipe(tmp_path, verify=f'mac_prefixes = ["{macs[0]}"]'), workdir=tmp_path)
    summary = run_with_timeout(run_sim, 90, recipe, 2, ca=load_ca(tmp_path))
    good, bad = sorted(summary.finals, key=lambda r: r.port)
    assert (good.outcome, bad.outcome) == ("PASS", "FAIL")
    stem = good.report.with_suffix("")
    files = {p.name for p in good.report.parent.iterdir() if ".label." in p.name}
    assert files == {f"{stem.name}.label.{ext}" for ext in ("png", "svg", "zpl")}       # none for the FAIL
    png = Image.open(stem.with_name(stem.name + ".label.png"))
    assert png.size == (400, 200) and round(png.info["dpi"][0]) == 203
    svg = ET.fromstring(stem.with_name(stem.name + ".label.svg").read_bytes())
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert texts[:3] == ["ESP32C2-4MB", f"S/N {good.serial}", f"MAC {good.mac}"]
    assert svg.get("width") == "50.0mm" and svg.get("height") == "25.0mm"
    zpl = stem.with_name(stem.name + ".label.zpl").read_text()
    assert zpl.startswith("^XA\n^CI28\n^PW400\n^LL200") and zpl.rstrip().endswith("^XZ")
    assert f"^BQN,2,5^FH^FDMA,S/N:{good.serial};MAC:{good.mac}^FS" in zpl


def test_png_holds_segnos_qr_symbol() -> None:
    spec = LabelSpec()
    content = label_content(spec, label_values(serial="C2D-000042", mac="24:0a:c4:12:34:56", module="M", recipe="r",
                                               chip="esp32c2", when=datetime(2025, 3, 3, tzinfo=timezone.utc)))
    assert content.qr == "S/N:C2D-000042;MAC:24:0a:c4:12:34:56"
    img = Image.open(__import__("io").BytesIO(to_png(spec, content))).convert("1")
    qr = segno.make(content.qr, error="m", micro=False)
    n = qr.symbol_size(scale=1, border=0)[0]
    # find the symbol's top-left dark module and its size from the finder pattern
    px = img.load()
    x0 = next(x for x in range(img.width) if any(px[x, y] == 0 for y in range(img.height)))
    y0 = next(y for y in range(img.height) if px[x0, y] == 0)
    size = next(i for i in range(1, 40) if px[x0 + i, y0] != 0) // 7
    read = [[px[x0 + c * size + size // 2, y0 + r * size + size // 2] == 0 for c in range(n)] for r in range(n)]
    assert read == [[bool(v) for v in row] for row in qr.matrix]


def test_zpl_escapes_field_data() -> None:
    spec = LabelSpec(formats=("zpl",), lines=("a^b~c_d é",))
    zpl = to_zpl(spec, label_content(spec, {"serial": "s", "mac": "m"})).decode()
    assert "^FDa_5Eb_7Ec_5Fd _C3_A9^FS" in zpl


def test_check_reports_label_mistakes_one_line_each(tmp_path: Path) -> None:
    bad = '\n[label]\nformats = ["pdf"]\nqr = "{serial} {lot}"\nlines = ["{serial"]\ndpi = 200\nwidth_mm = 5\n'
    res = CliRunner().invoke(main, ["check", str(_recipe(tmp_path, label=bad))])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    for field, text in (("label.formats[0]", "'pdf' is not one of png, svg, zpl"), ("label.qr", "{lot}"),
                        ("label.lines[0]", "'{serial'"), ("label.dpi", "200"), ("label.width_mm", "out of range")):
        assert any(field in line and text in line for line in lines), (field, lines)
    assert all(line.startswith(str(tmp_path)) for line in lines)
    ok = CliRunner().invoke(main, ["check", str(_recipe(tmp_path / "ok"))])
    assert ok.exit_code == 0, ok.output
