"""Basic commands of the virtual AT firmware (§2): AT, ATE0/1, RST, GMR, CMD, RESTORE, SYSSTORE,
SYSLOG, SYSMSG.

* ``AT+RST=<mode>`` exists when ``firmware.download_mode_commands`` is not empty (C2/C3,
  §2.3): exactly one parameter 0..1 (``AT+RST=1,1`` is ERROR). Mode 1 answers OK and puts the
  module into ROM download mode (the AT port goes silent).
* ``AT+SYSSTORE``: RAM only; boot default ``factory_param/sys_store`` (u8), 1 when missing.
* ``AT+SYSLOG``: RAM only, default 0.
* ``AT+SYSMSG``: query ``+SYSMSG:<n>`` without CR LF; persisted when SYSSTORE=1 in system NVS
  ``firmware.sysmsg_nvs`` (``NVM_012``/``s_msg`` i32, ground truth §8), read back at boot;
  AT+RESTORE erases it with the whole system NVS.
* ``AT+GMR`` (§2.4, G3 ``at_init.c`` formats): the app description of the booted image gives
  the AT core version, IDF version, project commit, build date/time and app version; the module
  name is the firmware's compiled-in table entry equal to ``factory_param/module_name`` (a string
  read at boot), else entry 0 (ground truth §2: a custom or missing name prints entry 0).
"""

from __future__ import annotations

from typing import Any

from .at_boot import NVS_ERRORS, nvs_editor, read_nvs_region
from .at_command import After, CommandSpec, Ctx, RunState
from .at_parser import Params, exec_fail


# -- AT / ATE ----------------------------------------------------------------------------------
def _at(ctx: "Ctx", p: Params) -> None:
    return None


def _ate0(ctx: "Ctx", p: Params) -> None:
    ctx.st.echo = False


def _ate1(ctx: "Ctx", p: Params) -> None:
    ctx.st.echo = True


# -- AT+RST --------------------------------------------------------------------------------------
def _rst_exec(ctx: "Ctx", p: Params) -> After:
    return lambda: ctx.fw.reboot(ctx)


def _rst_set(ctx: "Ctx", p: Params) -> After:
    p.count(1)                     # exactly one parameter: AT+RST=1,1 is ERROR (ground truth §3)
    mode = p.int(0, 0, 1)
    if mode == 0:
        return lambda: ctx.fw.reboot(ctx)

    def download() -> str:
        ctx.host.enter_download_mode()
        return "state"

    return download


# -- AT+GMR --------------------------------------------------------------------------------------
def gmr_lines(ctx: "Ctx") -> list[str]:
    """The four G3 ``AT+GMR`` lines for the booted app and flashed module name (§2.4)."""
    app = ctx.boot.app
    assert app is not None, "the firmware answers only after it booted an app"
    chip = ctx.profile.gmr_chip
    core = app.at_core
    if not core:  # a real esp-at image carries no AT-core record: derive one from the app version
        core = f"{app.version.lstrip('vV')}(unknown - {chip} - {app.date} {app.time})"
    commit = app.commit or ""
    return [
        f"AT version:{core}",
        f"SDK version:{app.idf_ver}",
        compile_line(ctx.profile, commit, app.date, app.time),
        f"Bin version:{bin_version(ctx.profile, app.version)}"
        f"({ctx.profile.printed_module_name(ctx.boot.typed('module_name', 'string'))})",
    ]


def compile_line(profile: Any, commit: str, date: str, time: str) -> str:
    """``compile time(<commit>):…`` (G2/G3) or the release's own format (G1: ``compile time:%s %s``)."""
    if not profile.has_fmt("gmr_compile"):
        return f"compile time({commit}):{date} {time}"
    text = profile.fmt("gmr_compile").removesuffix("\r\n")
    for value in [commit, date, time][-text.count("%s"):]:
        text = text.replace("%s", value, 1)
    return text


def bin_version(profile: Any, app_version: str) -> str:
    """What ``Bin version:`` prints: the app's version, or CONFIG_ESP_AT_FW_VERSION where the release did."""
    if profile.legacy and profile.bin_version_source == "CONFIG_ESP_AT_FW_VERSION" and profile.fw_version:
        return profile.fw_version
    return app_version


def _gmr(ctx: "Ctx", p: Params) -> None:
    for line in gmr_lines(ctx):
        ctx.info(line)


# -- AT+CMD? -------------------------------------------------------------------------------------
def _cmd_query(ctx: "Ctx", p: Params) -> None:
    for i, spec in enumerate(ctx.fw.order):
        t, q, s, e = spec.flags()
        ctx.info(f'+CMD:{i},"{spec.name}",{t},{q},{s},{e}')


# -- AT+RESTORE ----------------------------------------------------------------------------------
def _restore(ctx: "Ctx", p: Params) -> After:
    def after() -> str | None:
        part = ctx.boot.sys_nvs
        if part is not None:
            ctx.host.flash.erase(part.offset, part.size)
        return ctx.fw.reboot(ctx)

    return after


# -- SYSSTORE / SYSLOG / SYSMSG ------------------------------------------------------------------
def _sysstore_q(ctx: "Ctx", p: Params) -> None:
    ctx.info(f"+SYSSTORE:{ctx.st.sysstore}")


def _sysstore_s(ctx: "Ctx", p: Params) -> None:
    p.count(1)
    ctx.st.sysstore = p.int(0, 0, 1)


def _syslog_q(ctx: "Ctx", p: Params) -> None:
    ctx.info(f"+SYSLOG:{ctx.st.syslog}")


def _syslog_s(ctx: "Ctx", p: Params) -> None:
    p.count(1)
    ctx.st.syslog = p.int(0, 0, 1)


def _sysmsg_q(ctx: "Ctx", p: Params) -> None:
    ctx.info_raw(f"+SYSMSG:{ctx.st.sysmsg}", b"", b"")   # "%s:%d": no CR LF (ground truth §8)


def _sysmsg_s(ctx: "Ctx", p: Params) -> None:
    p.count(1)
    value = p.int(0, 0, 7)
    ctx.st.sysmsg = value
    if ctx.st.sysstore and ctx.boot.sys_nvs is not None:
        ns, key, kind = ctx.profile.sysmsg_nvs
        try:
            nvs_editor(ctx.host.flash, ctx.boot.sys_nvs).set(ns, key, kind, value)
        except NVS_ERRORS as exc:
            raise exec_fail(str(exc)) from None


#: Heap figures ``AT+SYSRAM?`` prints (free, minimum free; a fresh C2 Wi-Fi build, not read from a core).
SYSRAM_FREE, SYSRAM_MIN_FREE = 120_000, 110_000


def _sysram_q(ctx: "Ctx", p: Params) -> None:
    fmt = ctx.profile.fmt("sysram_query")        # "%s:%u,%u": no CR LF (ground truth / data)
    ctx.info_raw(fmt.replace("%s", "+SYSRAM", 1).replace("%u", str(SYSRAM_FREE), 1)
                 .replace("%u", str(SYSRAM_MIN_FREE), 1), b"", b"")


def init_basic(st: "RunState", host: Any, profile: Any) -> None:
    """Boot defaults of the basic settings."""
    sys_store = st.boot.typed("sys_store", "u8")
    st.sysstore = sys_store if sys_store in (0, 1) else 1
    st.syslog = 0
    st.sysmsg = 0
    if st.boot.sys_nvs is not None:
        try:
            ns, key, _kind = profile.sysmsg_nvs
            entry = read_nvs_region(host.flash, st.boot.sys_nvs, "nvs").get(ns, key)
        except NVS_ERRORS:
            entry = None
        if entry is not None and isinstance(entry.value, int) and 0 <= entry.value <= 7:
            st.sysmsg = entry.value


def commands(profile: Any) -> list[CommandSpec]:
    """The basic command specs, in esp-at's registration order where known (§2.5)."""
    rst_set = _rst_set if profile.download_mode_commands else None
    return [
        CommandSpec("AT", exec=_at),
        CommandSpec("ATE0", exec=_ate0),
        CommandSpec("ATE1", exec=_ate1),
        CommandSpec("AT+RST", set=rst_set, exec=_rst_exec),
        CommandSpec("AT+GMR", exec=_gmr),
        CommandSpec("AT+CMD", query=_cmd_query),
        CommandSpec("AT+RESTORE", exec=_restore),
        CommandSpec("AT+SYSRAM", query=_sysram_q),
        CommandSpec("AT+SYSMSG", query=_sysmsg_q, set=_sysmsg_s),
        CommandSpec("AT+SYSSTORE", query=_sysstore_q, set=_sysstore_s),
        CommandSpec("AT+SYSLOG", query=_syslog_q, set=_syslog_s),
    ]


__all__ = ["commands", "init_basic", "gmr_lines"]
