"""The AT client parses the per-release byte transcripts of the real core (tests/transcripts/, written
from the ground truth by hand, never captured from the simulator): every reply frames to its result,
and the replies verification reads parse to what the ground truth says they mean."""

from __future__ import annotations

import re

import pytest

from atfab.core.firmware import firmware_profile
from atfab.link.at.errors import AtError
from atfab.link.at.framing import ReplyParser, raw_kind
from atfab.link.at.gatt_lines import GattItem, read_chars, read_services
from atfab.link.at.parse import parse_rfpower, parse_sysmfg_key, parse_sysmfg_namespace, parse_sysmfg_numeric
from tests.transcript_support import load_all

TRANSCRIPTS = load_all()
_PROMPTED = re.compile(r'AT\+SYSFLASH=1,|AT\+SYSMFG=2,"[^"]*","[^"]*",[78],')


def _replies(t):
    """(command, parser) per step; data steps after a prompt are framed as results only."""
    echo, prompt_open = True, False
    for step in t.steps:
        send = step.send.decode("latin-1")
        if prompt_open:                       # raw data after '>': only the result follows
            p = ReplyParser("<data>", echo=False)
            prompt_open = False
        else:
            command = send.rstrip("\r\n")
            p = ReplyParser(command, raw=raw_kind(command), echo=echo, prompt=bool(_PROMPTED.match(command)))
        try:
            p.feed(step.expect)
        except AtError:
            pass                              # an ERROR reply: framed, typed
        assert p.done, (t.id, send, step.expect)
        prompt_open = p.result == "prompt"
        if send.strip().upper() == "ATE0" and p.result == "ok":
            echo = False
        yield p.command, p


@pytest.mark.parametrize("t", TRANSCRIPTS, ids=[t.id for t in TRANSCRIPTS])
def test_client_frames_and_parses_the_core_transcripts(t):
    fw = firmware_profile(t.release, t.chip, module=t.module)
    for command, p in _replies(t):
        if p.result != "ok":
            continue
        if command == "AT+BLEGATTSSRV?":
            items = read_services(p.lines, fw)
            assert items and all(isinstance(i, GattItem) for i in items), (t.id, p.lines)
            assert [i.srv_index for i in items] == list(range(1, len(items) + 1))
        elif command == "AT+BLEGATTSCHAR?":
            items = read_chars(p.lines, fw)
            assert items and all(isinstance(i, GattItem) for i in items), (t.id, p.lines)
            has_prop = t.release not in ("v3.3.0.0", "v4.0.0.0", "v4.1.0.0")
            assert all((i.prop is not None) == has_prop for i in items if i.kind == "char")
        elif command == "AT+RFPOWER?":
            assert len(parse_rfpower(p.lines[0], fields=fw.rfpower_fields)) == fw.rfpower_fields
        elif command == "AT+SYSMFG?":
            assert all(parse_sysmfg_namespace(ln) for ln in p.lines)
        elif re.fullmatch(r'AT\+SYSMFG=1,"[^"]+"', command):
            assert all(parse_sysmfg_key(ln, command=command) for ln in p.lines)
        elif raw_kind(command) == "sysmfg" and p.lines:
            ns, key, type_, value = parse_sysmfg_numeric(p.lines[0], command=command)
            if (ns, key) == ("my_app", "n"):
                assert value == 44            # u8 300 was truncated by the firmware, §6
        elif raw_kind(command) == "sysflash":
            n = int(re.search(r",(\d+)$", command).group(1))
            assert len(p.raws) == 1 and len(p.raws[0].data) == n


def test_every_release_has_transcripts():
    assert {t.release for t in TRANSCRIPTS} >= {"v3.3.0.0", "v4.1.0.0", "v5.0.1.0", "master"}
