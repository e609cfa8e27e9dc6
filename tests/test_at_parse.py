"""Pure AT parsing: framing of replies and information-line parsers (examples + hypothesis fuzzing)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atfab.link.at import parse as P
from atfab.link.at.errors import AtBusy, AtError, AtResponseError
from atfab.link.at.framing import ReplyParser, info_prefixes, raw_kind
from atfab.core.errors import InputError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def feed_all(parser: ReplyParser, data: bytes, step: int | None = None) -> ReplyParser:
    if step is None:
        parser.feed(data)
    else:
        for i in range(0, len(data), step):
            parser.feed(data[i:i + step])
    return parser


# -- framing -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("step", [None, 1, 3])
def test_info_lines_echo_urc_ok(step):
    data = b"AT+UART_CUR?\r\nWIFI CONNECTED\r\n+UART_CUR:115273,8,1,0,1\r\n\x00\xffjunk\r\n+BLECONN:0,\"aa\"\r\n\r\nOK\r\nleft"
    p = feed_all(ReplyParser("AT+UART_CUR?"), data, step)
    assert p.done and p.result == "ok"
    assert p.lines == ["+UART_CUR:115273,8,1,0,1"]
    assert p.urcs[0] == "WIFI CONNECTED" and p.urcs[2] == '+BLECONN:0,"aa"'
    assert len(p.urcs) == 3
    assert bytes(p.buf) == b"left"


def test_error_with_code_and_busy():
    p = ReplyParser("AT+FAKE")
    with pytest.raises(AtError) as e:
        p.feed(b"AT+FAKE\r\nERR CODE:0x01090000\r\n\r\nERROR\r\n")
    assert e.value.code == 0x01090000 and not isinstance(e.value, AtBusy)
    p = ReplyParser("AT")
    with pytest.raises(AtBusy):
        p.feed(b"busy p...\r\n")


def test_prompt_variants():
    for data, rest in [(b"\r\nOK\r\n\r\n>", b""), (b"\r\n> ", b""), (b"\r\n>", b""), (b">\r\nX", b"\r\nX")]:
        p = ReplyParser('AT+SYSMFG=2,"a","b",8,3', prompt=True)
        assert p.feed(data) and p.result == "prompt", data
        assert bytes(p.buf) == rest


def test_raw_sysmfg_with_crlf_inside_and_trailer():
    blob = b"\r\nOK\r\n\x00\xff" * 3
    data = b'+SYSMFG:"client_cert","client_cert.0",8,%d,' % len(blob) + blob + b"\r\n\r\nOK\r\n"
    for step in (None, 1, 7):
        p = feed_all(ReplyParser('AT+SYSMFG=1,"client_cert","client_cert.0"', raw="sysmfg"), data, step)
        assert p.done and p.raws[0].data == blob
        assert p.raws[0].fields == ["client_cert", "client_cert.0", "8", str(len(blob))]


def test_raw_sysflash_and_numeric_sysmfg_is_a_line():
    p = ReplyParser('AT+SYSFLASH=2,"mfg_nvs",0,4', raw="sysflash")
    p.feed(b"+SYSFLASH:4,OK\r\n\r\n\r\nOK\r\n")
    assert p.raws[0].data == b"OK\r\n"
    p = ReplyParser('AT+SYSMFG=1,"factory_param","uart_port"', raw="sysmfg")
    p.feed(b'+SYSMFG:"factory_param","uart_port",2,1,1\r\n\r\nOK\r\n')
    assert p.lines == ['+SYSMFG:"factory_param","uart_port",2,1,1'] and not p.raws


def test_ready_mid_reply_is_an_error_but_final_when_waited_for():
    with pytest.raises(AtError):
        ReplyParser("AT").feed(b"\r\nready\r\n")
    p = ReplyParser("<ready>", info=(), echo=False, finals=("ready",))
    assert p.feed(b"garbage\r\n\r\nready\r\n") and p.urcs == ["garbage"]


def test_prefix_helpers():
    assert info_prefixes('AT+SYSMFG=1,"x"') == ("+SYSMFG:",)
    assert info_prefixes("AT+GMR")[0] == "AT version:"
    assert info_prefixes("ATE0") == ()
    assert raw_kind('AT+SYSFLASH=2,"mfg_nvs",0,100') == "sysflash"
    assert raw_kind('AT+SYSMFG=1,"a","b"') == "sysmfg"
    assert raw_kind('AT+SYSMFG=1,"a"') is None


# -- field parsers ---------------------------------------------------------------------------------------
def test_quote_and_build():
    assert P.quote('a"b,c\\d') == '"a\\"b\\,c\\\\d"'
    assert P.build_command("AT+SYSMFG", 0, "ns", None) == 'AT+SYSMFG=0,"ns"'
    assert P.build_command("AT+SYSFLASH", 1, "mfg_nvs", 0, 4096) == 'AT+SYSFLASH=1,"mfg_nvs",0,4096'
    with pytest.raises(InputError):
        P.quote("a\r\nb")
    fields = P.split_fields(P.quote('a"b,c\\d') + ",5")
    assert fields == [P.Field('a"b,c\\d', True), P.Field("5", False)]


def test_gmr_g3_and_g1():
    g = P.parse_gmr([
        "AT version:3.3.0.0(3b13d04 - ESP32C2 - May  8 2024 08:21:45)",
        "SDK version:v5.0.6-dirty",
        "compile time(be332568):May  8 2024 08:50:59",
        "Bin version:v3.3.0.0(ESP32C2-4MB)",
    ])
    assert (g.at_version, g.chip, g.sdk_version, g.compile_time, g.compile_commit, g.bin_version, g.module_name) == (
        "3.3.0.0", "ESP32C2", "v5.0.6-dirty", "May  8 2024 08:50:59", "be332568", "v3.3.0.0", "ESP32C2-4MB")
    g1 = P.parse_gmr(["AT version:1.0.b1.0(1e9060d - Jan 22 2018 17:39:07)", "SDK version:v2.1",
                      "compile time:Jan 22 2018 17:41:13"])
    assert g1.compile_time == "Jan 22 2018 17:41:13" and g1.bin_version is None and g1.chip is None
    with pytest.raises(AtResponseError):
        P.parse_gmr(["SDK version:v1"])


def test_line_parsers():
    assert P.parse_cmd_line('+CMD:5,"AT+CMD",0,1,0,0') == P.CmdInfo(5, "AT+CMD", False, True, False, False)
    assert P.parse_cmd_line("+CMD:0,AT,0,0,0,1").name == "AT"
    assert P.parse_uart("+UART_DEF:115200,8,1,0,1", "+UART_DEF:") == P.UartConfig(115200, 8, 1, 0, 1)
    assert P.parse_rfpower("+RFPOWER:78,9,9,9") == [78, 9, 9, 9]
    assert P.parse_country('+CWCOUNTRY:0,"US",1,11') == P.Country(0, "US", 1, 11)
    assert P.parse_mac('+CIPSTAMAC:"5c:cf:7f:a5:60:19"', "+CIPSTAMAC:") == bytes.fromhex("5ccf7fa56019")
    assert P.parse_mac("+BLEADDR:24:0a:c4:03:f4:d6", "+BLEADDR:") == bytes.fromhex("240ac403f4d6")
    assert P.parse_sysflash_entry('+SYSFLASH:"mfg_nvs",1,2,0x1f000,0x1f000') == P.SysflashEntry(
        "mfg_nvs", 1, 2, 0x1F000, 0x1F000)
    assert P.parse_sysmfg_key('+SYSMFG:"factory_param","uart_baudrate",6') == (
        "factory_param", P.SysmfgKey("uart_baudrate", "i32"))
    assert P.parse_sysmfg_numeric('+SYSMFG:"factory_param","uart_port",2,2,-1') == ("factory_param", "uart_port", 2, -1)
    with pytest.raises(AtResponseError):
        P.parse_sysmfg_numeric('+SYSMFG:"factory_param","uart_port",2,3,-1')
    with pytest.raises(AtResponseError):
        P.parse_sysmfg_numeric('+SYSMFG:"f","k",1,3,256')
    assert P.parse_sysmfg_numeric('+SYSMFG:"f","k",6,4,115200', numeric_length="type_size")[3] == 115200
    with pytest.raises(AtResponseError):
        P.parse_sysmfg_numeric('+SYSMFG:"f","k",6,6,115200', numeric_length="type_size")
    assert P.parse_gatts_service("+BLEGATTSSRV:1,1,0xA002,1") == P.GattsService(1, 1, "0xA002", True)
    assert P.parse_gatts_char('+BLEGATTSCHAR:"char",1,1,0xC300') == P.GattsChar("char", 1, 1, "0xC300", None)
    assert P.parse_gatts_char('+BLEGATTSCHAR:"char",1,3,0xC302,0x08').prop == 8
    assert P.parse_gatts_char('+BLEGATTSCHAR:"desc",1,1,1,0x2901') == P.GattsChar("desc", 1, 1, "0x2901", None, 1)
    assert P.parse_gatts_char('+BLEGATTSCHAR:"desc",1,1,1') == P.GattsChar("desc", 1, 1, None, None, 1)
    assert P.type_number("blob") == 8 and P.type_number(6) == 6
    with pytest.raises(InputError):
        P.type_number("u64")


# -- fuzzing: any input → data or a typed error -------------------------------------------------------------
LINE_PARSERS = [
    lambda s: P.parse_gmr(s.split("\n")),
    P.parse_cmd_line,
    lambda s: P.parse_uart(s, "+UART_CUR:"),
    P.parse_rfpower,
    P.parse_country,
    lambda s: P.parse_mac(s, "+CIPSTAMAC:"),
    P.parse_sysflash_entry,
    P.parse_sysmfg_namespace,
    P.parse_sysmfg_key,
    P.parse_sysmfg_numeric,
    P.parse_gatts_service,
    P.parse_gatts_char,
    lambda s: P.parse_single_int(s, "+SYSLOG:"),
    P.split_fields,
]
PREFIXES = ["", "+CMD:", "+UART_CUR:", "+RFPOWER:", "+CWCOUNTRY:", "+CIPSTAMAC:", "+SYSFLASH:", "+SYSMFG:",
            "+BLEGATTSSRV:", "+BLEGATTSCHAR:", "+SYSLOG:", "AT version:", "compile time("]
FIELDISH = st.text(alphabet=st.sampled_from(list('0123456789abcxX,"\\ -:()+.ACDEFGH\x00\u00e9')), max_size=40)


@FUZZ
@given(prefix=st.sampled_from(PREFIXES), body=st.one_of(FIELDISH, st.text(max_size=40)),
       which=st.integers(0, len(LINE_PARSERS) - 1))
def test_fuzz_line_parsers(prefix, body, which):
    try:
        LINE_PARSERS[which](prefix + body)
    except AtResponseError:
        pass


WIRE = st.lists(st.one_of(
    st.sampled_from([b"\r\n", b"OK\r\n", b"\r\nOK\r\n", b"ERROR\r\n", b"busy p...\r\n", b">", b"> ",
                     b"ERR CODE:0x010a0000\r\n", b'+SYSMFG:"a","b",8,5,', b'+SYSMFG:"a","b",2,1,1\r\n',
                     b"+SYSFLASH:3,", b"ready\r\n", b"AT\r\n", b"\r", b"\n", b"+SYSMFG:"]),
    st.binary(max_size=12)), max_size=25)


@FUZZ
@given(chunks=WIRE, raw=st.sampled_from([None, "sysmfg", "sysflash"]), prompt=st.booleans(),
       finals=st.sampled_from([(), ("ready",)]))
def test_fuzz_reply_parser(chunks, raw, prompt, finals):
    p = ReplyParser("AT", raw=raw, prompt=prompt, finals=finals, max_line=64)
    try:
        for c in chunks:
            p.feed(c)
            assert p.need() >= 1
    except AtError:
        assert p.done
        return
    if p.done:
        assert p.result in ("ok", "prompt", "ready")
    for item in p.raws:
        assert len(item.data) == int(item.fields[-1])
