"""One firmware build's behaviour as data: :class:`FirmwareProfile`.

A profile is what one ESP-AT build (an esp-at release, one chip's core, one module's command sets)
prints and expects. :mod:`atfab.core.firmware.catalog` makes them from the shipped data files
(``atfab/core/firmware/data/*.toml``); the AT client and the verifier read them to know what the
module will say, the virtual module reads them to say it. Both sides implement the behaviour on
their own; only the facts are shared.

Fields are grouped as the data files are: identity of the build, release facts, chip facts,
facts common to every release (:mod:`~atfab.core.firmware.catalog` documents each data key).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from ..errors import InputError

#: Flags of a command form in :attr:`FirmwareProfile.commands` (``"QS"`` = query and set).
FORM_LETTERS = {"test": "T", "query": "Q", "set": "S", "exec": "E"}


@dataclass(frozen=True)
class FirmwareProfile:
    """What one ESP-AT firmware build prints and expects (see the module docstring)."""

    # -- identity of the build --------------------------------------------------------------
    #: esp-at release (git tag, or "master") the build was made from.
    release: str = "v4.1.0.0"
    #: Firmware generation: "G3" (ESP-AT v3.1+, mfg_nvs); G0/G1/G2 are legacy generations.
    generation: str = "G3"
    chip: str = "esp32c2"
    #: Chip name inside ``AT version:`` (``ESP32C2``).
    gmr_chip: str = "ESP32C2"
    #: Version of the chip's AT core library (``AT version:`` numbers) and its suffix (``-dev``).
    core_version: str = "4.1.0.0"
    core_suffix: str = ""
    #: The core library's commit as printed (7 hex digits): how an image or a reply is identified.
    core_commit: str = "c861975"
    core_date: str = "Jul 18 2025"
    core_time: str = "07:28:00"
    #: A silence core (``libesp32c2_at_core_silence.a``) prints ``s-`` before the commit.
    silence: bool = False
    #: ``SDK version:`` an Espressif build of this release prints (``esp_get_idf_version()``).
    sdk_version: str = ""
    #: The factory module this build is for (``ESP32C2-4MB``) and its esp-at module_config folder.
    module: str = ""
    module_config: str = ""
    #: First field of ``Bin version:`` (CONFIG_APP_PROJECT_VER, or CONFIG_ESP_AT_FW_VERSION before v4.1).
    fw_version: str = ""
    #: The compiled-in module-name table: ``Bin version:`` prints the entry whose name equals
    #: factory_param/module_name, else entry 0.
    module_names: tuple[str, ...] = ("ESP32C2-2MB",)
    #: Command sets compiled in (``base``, ``wifi``, ``net``, ``ble``, ``blufi``, ``uart`` ...).
    features: tuple[str, ...] = ("base", "wifi", "net", "uart")
    #: Every registered command in registration (``AT+CMD?``) order: (name, forms as T/Q/S/E letters).
    commands: tuple[tuple[str, str], ...] = ()
    #: C format strings of the replies, by name (``%U`` = UUID in upper-case hex): :meth:`fmt`.
    formats: tuple[tuple[str, str], ...] = ()

    # -- release facts --------------------------------------------------------------------------
    #: Where ``Bin version:`` comes from: CONFIG_APP_PROJECT_VER (v4.1+) or CONFIG_ESP_AT_FW_VERSION.
    bin_version_source: str = "CONFIG_APP_PROJECT_VER"
    #: esp_app_desc_t.version: "bin_version" (equal to Bin version) or "git_describe" (v3.3/v4.0).
    app_desc_version: str = "bin_version"
    #: Translation unit whose __DATE__/__TIME__ ``compile time`` prints (never esp_app_desc_t's).
    compile_time_source: str = "components/at/src/at_init.c"
    #: Boot value of SYSSTORE: "factory_param" (factory_param/sys_store u8, missing -> 1) or "constant" (1).
    sysstore_boot: str = "factory_param"
    #: Two tables register one name: "last" or "first" registered answers.
    cmd_search_duplicate: str = "last"
    #: ``AT+SYSMFG?``: "unique" (each namespace once) or "previous" (only repeats of the entry
    #: just before are suppressed, so interleaved namespaces are listed again); 0 = no count cap.
    sysmfg_namespace_listing: str = "unique"
    sysmfg_namespace_max: int = 32
    #: ``AT+RFPOWER=<wifi>`` needs a Wi-Fi mode other than NULL (v3.3/v4.0).
    rfpower_set_wifi_requires_mode: bool = False
    #: PKI namespaces the core opens in mfg_nvs (``s_at_pki_partition_name``).
    pki_namespaces: tuple[str, ...] = ()
    #: DNS servers a fresh module has (``AT+CIPDNS?``).
    default_dns: tuple[str, ...] = ("208.67.222.222", "114.114.114.114", "8.8.8.8")
    #: factory_param at boot: "split" (module name on its own; the Wi-Fi chain max_tx_power ->
    #: start_channel -> channel_num -> country_code stops at the first missing or wrong-typed key)
    #: or "chain" (v4.0: one chain starting with module_name).
    factory_param_boot: str = "split"
    #: A missing UART key in factory_param: "defaults" (Kconfig defaults) or "no_uart" (v4.0: no AT port).
    uart_missing_key: str = "defaults"
    #: Registration marker of a command set in the image (``{set}`` = its marker name).
    marker: str = "esp_at_{set}_cmd_regist"
    #: Baud of the AT UART of a unit that never stored one (fresh, or factory-initialised), for a
    #: release that reads its UART from no factory partition (G0 NONOS AT, esp32-at v1.0/v1.1): such a
    #: unit answers at this rate until ``AT+UART=``/``AT+UART_DEF=`` stores another. 0: the UART comes
    #: from the factory_param the station flashes, so the unit boots at the recipe's baud.
    uart_boot_baud: int = 0

    # -- legacy generations (G1/G2: per-item partitions, no AT+SYSMFG); defaults = G3 -------------
    #: factory_param partition layout (atfab.image.legacy_factory.LAYOUTS); "" = none (G3: mfg_nvs).
    factory_param_layout: str = ""
    #: Module name of ``Bin version``: "name" (G3: factory_param/module_name), "id" (table[byte 3] of the
    #: legacy block) or "version" (by id in blocks of version <= 2, by the name at offset 56 otherwise).
    factory_param_module: str = "name"
    #: Legacy block byte 4 at boot: "apply" unless 0xFF, or "skip_v1_levels" (also not when version 1 and < 10).
    factory_param_tx_power: str = "apply"
    #: The AT UART number comes from byte 5 of the legacy block (else always UART1).
    factory_param_uart_port: bool = True
    #: Item type of the PKI partitions a build writes: "by_partition" or "cert" (v2.2.0.0..v2.4.0.0).
    pki_item_types: str = "by_partition"
    #: MD5 entry in the primary partition table / in at_customize.bin as esp-at's build writes them.
    partition_table_md5: bool = False
    at_customize_md5: bool = True
    #: JSON key order of ble_data images: "csv" (Python 3 tool) or "py2" (CPython 2.7 dict order).
    ble_data_json_order: str = "csv"
    #: The GATT table a legacy build writes to ble_data when none is given (partitions/legacy-gatt/).
    ble_data_default: str = ""
    #: ``ERR CODE:0x%08x`` precedes every ERROR (G1), not only with AT+SYSLOG=1.
    err_code_always: bool = False
    #: AT+SYSFLASH partition lookup: "name" (any entry of at_customize) or "type_0x40" (v1.0..v2.1).
    sysflash_lookup: str = "name"
    #: Where a TLS slot's certificate and key live and how they are rewritten: "sysmfg" (mfg_nvs blobs,
    #: AT+SYSMFG, G3) or "partition" (the per-item 0xF1F1 PKI partitions, item id = slot index, rewritten
    #: with AT+SYSFLASH erase + write, G1/G2).
    pki_store: str = "sysmfg"
    #: AT+SYSFLASH erase granularity: offset and length multiples of this (ground truth §5).
    sysflash_sector: int = 4096
    #: AT+RFPOWER Wi-Fi power given as a level: the 0.25 dBm value of each level (G1); empty = 0.25 dBm.
    rfpower_levels: tuple[int, ...] = ()
    #: Arguments of the ``gmr_at_version`` format, in order (names the simulator fills in).
    gmr_at_version_args: tuple[str, ...] = ("major", "minor", "patch", "build", "suffix", "silence", "commit", "chip",
                                            "date", "time")

    # -- chip and build facts -------------------------------------------------------------------
    #: "nimble" (C2/C5/C6/C61), "bluedroid" (ESP32/C3) or "none".
    ble_stack: str = "nimble"
    #: ``+RFPOWER:`` fields: 4 when a registered set sets ``at_ble_tx_power_get``, else 1.
    rfpower_fields: int = 1
    #: Settable Wi-Fi power in 0.25 dBm (``AT+RFPOWER``) and BLE power values.
    rfpower_min: int = 40
    rfpower_max: int = 84
    rfpower_ble_min: int = 0
    rfpower_ble_max: int = 15
    #: Wi-Fi readback: "echo" (the set value) or "esp32_steps" (:data:`ESP32_RFPOWER_STEPS`).
    rfpower_readback: str = "echo"
    #: BLE fields readback: "adv_all" (RISC-V cores print the ADV value three times) or "per_type".
    rfpower_ble_readback: str = "adv_all"
    #: ``AT+BLEINIT`` roles accepted; ``bleinit_u8``: the role is truncated to 8 bits unchecked first.
    bleinit_roles: tuple[int, ...] = (0, 1, 2)
    bleinit_u8: bool = True
    #: GATT services exist after ``AT+BLEINIT=2`` (NimBLE) or need AT+BLEGATTSSRVCRE/START (Bluedroid).
    gatts_auto_create: bool = True

    # -- common to every release (common.toml) --------------------------------------------------
    echo_default: bool = True
    #: ``ATE0`` is echoed: the echo is written before the line is parsed.
    ate0_echoed: bool = True
    syslog_default: int = 0
    #: Commands that enter ROM download mode (``AT+RST=1`` where AT+RST has a set form).
    download_mode_commands: tuple[str, ...] = ("AT+RST=1",)
    #: Bytes after the raw bytes of a binary read: SYSFLASH none (the result code follows at
    #: once), SYSMFG string/blob CR LF.
    sysflash_read_trailer: bytes = b""
    sysmfg_read_trailer: bytes = b"\r\n"
    #: Data prompts: SYSFLASH write the single ``>``; SYSMFG string/blob write ``\r\nOK\r\n\r\n>``.
    sysflash_prompt: bytes = b">"
    sysmfg_prompt: bytes = b"\r\nOK\r\n\r\n>"
    #: Length field of a numeric SYSMFG read: characters of the decimal text.
    sysmfg_numeric_length: str = "decimal_text"
    #: SYSMFG string/blob length limit (1..8191, ERROR before the prompt) and NVS name limit.
    sysmfg_value_max: int = 8191
    sysmfg_name_max: int = 15
    #: Max NVS string value in bytes, including the NUL (ESP-IDF nvs_set_str).
    nvs_string_max: int = 4000
    #: System NVS places: SYSMSG (namespace, key, type) and the station MAC set under SYSSTORE=1.
    sysmsg_nvs: tuple[str, str, str] = ("NVM_012", "s_msg", "i32")
    sta_mac_nvs: tuple[str, str, str] = ("NVM_004", "mac", "blob")
    #: Country policy esp-at applies at boot with the factory values (WIFI_COUNTRY_POLICY_MANUAL).
    cwcountry_boot_policy: int = 1
    #: Flow control a fresh module stores in UART_DEF (Kconfig AT_UART_DEFAULT_FLOW_CONTROL).
    uart_default_flow_control: int = 1
    #: ``AT+BLEADDR?`` public address = base MAC + this (ESP-IDF convention; not read from a core).
    bt_mac_offset: int = 2
    #: AT UART RX buffer in bytes (1 KB on C2, 2 KB elsewhere): pacing for raw payloads.
    uart_rx_buffer: int = 1024
    #: ``busy p...`` text (the line is sent as ``\r\nbusy p...\r\n``).
    busy_text: str = "busy p..."
    #: Flash offset of the primary partition table the bootloader reads (0xC000 on C5/C61).
    partition_table_offset: int = 0x8000
    #: UART source clock in Hz and the highest accepted baud.
    uart_clock_hz: int = 40_000_000
    uart_baud_max: int = 5_000_000
    #: ``+RFPOWER:`` Wi-Fi value when factory_param/max_tx_power is not applied (driver default 20 dBm).
    rfpower_default: int = 80
    #: ``+RFPOWER:`` BLE fields before ``AT+BLEINIT``.
    rfpower_ble_uninit_value: int = 0
    #: PKI key naming of the mfg_nvs generator: "by_count" (bare name when one file) or "indexed".
    pki_key_naming: str = "by_count"

    # -- until the client and the simulator read the fields above (issue 13, next pieces) -----------
    #: Old single trailer of both binary reads (the data says: SYSFLASH none, SYSMFG CR LF).
    raw_read_trailer: bytes = b"\r\n"
    #: Old prompt styles: "ok_prompt" = ``\r\nOK\r\n\r\n>``, "bare_prompt" = ``\r\n>``.
    sysflash_write_prompt: str = "bare_prompt"
    sysmfg_write_prompt: str = "ok_prompt"
    mac_quoted: bool = True
    bleaddr_quoted: bool = True
    #: Enterprise namespaces the mfg_nvs build writes: "wpa_ent" or "wpa2" (see pki_namespaces).
    enterprise_namespace: str = "wpa_ent"
    #: "c2" (NimBLE: char lines only) or "full" (Bluedroid: property and desc lines).
    gattschar_style: str = "c2"

    # -- derived views ----------------------------------------------------------------------------
    @property
    def wifi(self) -> bool:
        """The build has the Wi-Fi command set."""
        return "wifi" in self.features

    @property
    def ble(self) -> bool:
        """The build has the BLE command set (GATT server, AT+BLEADDR)."""
        return "ble" in self.features

    @property
    def bt_host(self) -> bool:
        """BLE or BluFi is compiled in (``AT+BLEADDR`` answers once either is initialised)."""
        return "ble" in self.features or "blufi" in self.features

    @property
    def legacy(self) -> bool:
        """A G0/G1/G2 build: per-item partitions (or none), no AT+SYSMFG."""
        return self.generation != "G3"

    @property
    def at_version(self) -> str:
        """``4.1.0.0`` + suffix, as ``AT version:`` prints it."""
        return self.core_version + self.core_suffix

    @property
    def label(self) -> str:
        """``esp-at v5.0.1.0 ESP32C2 core 4.2.0.0-dev (3258eee)``: how reports name the build."""
        return f"esp-at {self.release} {self.gmr_chip} core {self.at_version} ({self.core_commit})"

    def fmt(self, name: str) -> str:
        """The format string ``name`` (KeyError when this build has none)."""
        for key, value in self.formats:
            if key == name:
                return value
        raise KeyError(f"{self.label} has no {name!r} format")

    def has_fmt(self, name: str) -> bool:
        return any(key == name and value for key, value in self.formats)

    def forms(self, name: str) -> str | None:
        """Forms (T/Q/S/E letters) the firmware answers for command ``name``, None when unknown.

        Two sets that register one name resolve as :attr:`cmd_search_duplicate` says.
        """
        hits = [forms for cmd, forms in self.commands if cmd == name]
        if not hits:
            return None
        return hits[0] if self.cmd_search_duplicate == "first" else hits[-1]

    def has_command(self, name: str, form: str | None = None) -> bool:
        """True when ``name`` is registered (and answers ``form``: test/query/set/exec)."""
        forms = self.forms(name)
        return forms is not None and (form is None or FORM_LETTERS[form] in forms)

    def printed_module_name(self, module_name: object) -> str:
        """What ``Bin version:`` prints for factory_param/module_name ``module_name`` (None: missing)."""
        if isinstance(module_name, str) and module_name in self.module_names:
            return module_name
        return self.module_names[0] if self.module_names else ""

    def with_overrides(self, overrides: dict[str, Any], *, source: str = "<profile>") -> "FirmwareProfile":
        """A copy with fields replaced from a TOML table; unknown names are an :class:`InputError`."""
        known = {f.name for f in fields(self)}
        values: dict[str, Any] = {}
        for name, value in overrides.items():
            if name in ("ble", "wifi"):       # module profiles name the build's sets this way
                values["features"] = _toggle(values.get("features", self.features), name, value, source)
                continue
            if name not in known:
                raise InputError(f"unknown firmware setting {name!r}", file=source, field=f"firmware.{name}")
            values[name] = _coerce(getattr(self, name), value, name, source)
        return replace(self, **values)


def _toggle(features: tuple[str, ...], name: str, on: object, source: str) -> tuple[str, ...]:
    if not isinstance(on, bool):
        raise InputError("must be true or false", file=source, field=f"firmware.{name}")
    rest = tuple(f for f in features if f != name)
    return (*rest, name) if on else rest


def _coerce(current: Any, value: Any, name: str, source: str) -> Any:
    where = f"firmware.{name}"
    if isinstance(current, tuple):
        if not isinstance(value, list):
            raise InputError("must be a list", file=source, field=where)
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    if isinstance(current, bytes):
        if not isinstance(value, str):
            raise InputError("must be a string", file=source, field=where)
        return value.encode("latin-1")
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise InputError("must be true or false", file=source, field=where)
        return value
    if isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError("must be an integer", file=source, field=where)
        return value
    if isinstance(current, str) and not isinstance(value, str):
        raise InputError("must be a string", file=source, field=where)
    return value


#: ESP32 Wi-Fi power readback (esp-at docs, driver quantisation): (lowest set value of a step,
#: what ``AT+RFPOWER?`` then shows): 40–43 → 34, 44–51 → 44, 52–55 → 52, 56–59 → 56, 60–65 → 60,
#: 66–71 → 66, 72–77 → 72, 78–84 → 78.
ESP32_RFPOWER_STEPS = ((78, 78), (72, 72), (66, 66), (60, 60), (56, 56), (52, 52), (44, 44), (40, 34))


def rfpower_readback(value: int, firmware: FirmwareProfile) -> int:
    """What ``AT+RFPOWER?`` shows after the Wi-Fi power ``value`` was applied.

    "echo" shows the value; "esp32_steps" quantises it with :data:`ESP32_RFPOWER_STEPS`. A value
    outside ``rfpower_min..rfpower_max`` (the firmware refuses it) is returned as it is.
    """
    if firmware.rfpower_readback != "esp32_steps" or not firmware.rfpower_min <= value <= firmware.rfpower_max:
        return value
    return next((shown for low, shown in ESP32_RFPOWER_STEPS if value >= low), value)


__all__ = ["FirmwareProfile", "ESP32_RFPOWER_STEPS", "rfpower_readback", "FORM_LETTERS"]
