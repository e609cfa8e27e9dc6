"""``atfab customize --port`` on a G1/G2 module: its 0xFCFC factory_param block over ``AT+SYSFLASH``.

ESP32 AT v1.1.3+ and ESP-AT v2.x-v3.0.0.0 have no mfg_nvs and no ``AT+SYSMFG``; their factory
settings are the 4 KB ``factory_param`` partition (reference §10.4). The block is read with
``AT+SYSFLASH=2``, changed exactly as ``customize --image`` changes the same block
(:func:`atfab.customize.legacy.customize_legacy_block`: only the named fields' bytes), and written
back: erase the partition's sector, write the 4096 bytes, read them back (measurement
``factory_param.sha256``). A write that fails puts the old block back (:class:`CustomizeIncomplete`
says whether that worked). Then ``AT+RST`` and the checks the firmware makes visible: the block
read again, ``AT+GMR`` module name (version 3 blocks), ``AT+UART_DEF?`` after ``--baud``,
``AT+RFPOWER?`` (0.25 dBm releases), ``AT+CWCOUNTRY?`` where the release has it.
Certificates, keys and ble_data go through a staged copy in the partition's last sector(s) when
there is room (:class:`atfab.link.at.partition_head.PartitionHead`): a cut between an erase and its
write leaves a whole copy, which the next run puts back before it plans (:func:`recover_staged`).
Certificates and keys (``--client-cert0`` ...) are items of the PKI partitions: :func:`plan_module_items`,
:func:`write_items`, planned before anything is written.

The partition is one sector, so there is no room to stage the new block beside the old one: a
power cut between the erase and the write leaves no block (the firmware then boots with its
built-in defaults) and the old values only in the error message of this run.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import DeviceError, InputError
from ..core.firmware import FirmwareProfile, rfpower_readback
from ..core.measurement import COUNTRY, GMR_MODULE_NAME, RF_POWER_WIFI, UART_DEF, Measurement
from ..image import legacy_factory as lf
from ..link.at.partition_head import BLE as BLE_IMAGE, PKI as PKI_IMAGE, PartitionHead
from ..link.at.errors import AtError, AtTimeout, LinkLost
from .legacy import customize_legacy_block
from .legacy_items import BLE, plan_ble, plan_items, without_pki
from .block_journal import BlockEntry, BlockJournal
from .nvs_edit import Change
from .readback import measure, measure_bytes
from .plan import CustomizeRequest, pki_namespace

FACTORY = "factory_param"
_AT_FAULTS = (AtError, AtTimeout, LinkLost)


def _write_block(client: Any, size: int, block: bytes) -> None:
    client.sysflash_erase(FACTORY, 0, size)
    client.sysflash_write(FACTORY, 0, block)


def uart_def_values(client: Any) -> list[Any]:
    """``AT+UART_DEF?`` as ``[baud, databits, stopbits, parity, flow]``."""
    d = client.uart_def()
    return [d.baud, d.databits, d.stopbits, d.parity, d.flow]


def country_values(client: Any) -> list[Any]:
    """``AT+CWCOUNTRY?`` as ``[code, start channel, channel count]``."""
    c = client.country()
    return [c.code, c.start_channel, c.channel_count]


def read_block(client: Any, target: str) -> tuple[bytes, int]:
    """The module's factory_param partition (bytes, partition size); InputError when it has none."""
    part = next((p for p in client.sysflash_partitions() if p.name == FACTORY), None)
    if part is None:
        raise InputError(f"the module lists no {FACTORY} partition in AT+SYSFLASH? (esp32-at v1.0/v1.1 have "
                         "none: they use built-in defaults)", file=target, field=FACTORY)
    size = min(part.size, lf.SIZE)
    return client.sysflash_read(FACTORY, 0, size), size


def customize_block(client: Any, request: CustomizeRequest, *, chip: str | None, firmware: FirmwareProfile,
                    target: str, out: list[Measurement], incomplete: Any,
                    journal: UnitBlockJournal | None = None) -> tuple[list[Change], dict[str, Any], bytes, bytes]:
    """Change the module's block (module docstring); the changes, the old fields, the new block, the old one.
    ``incomplete(failed, cause, written, restored, again)`` makes the error of a failed write. ``journal``:
    the old and new block are kept there before the erase, the entry closed once a whole block reads back."""
    old, size = read_block(client, target)
    if not lf.looks_like_block(old):
        raise InputError(f"the module's {FACTORY} partition holds no 0xFCFC block (nothing to customise; "
                         "write a whole one with atfab build + flash)", file=target, field=FACTORY)
    new, changes = customize_legacy_block(old, without_pki(request), chip=chip, target=target,
                                          generation=firmware.generation)
    before = lf.decode_block(old, source=target)
    want_port = request.factory_param.get("uart_port")
    if want_port is not None and before.get("uart_port") not in (None, want_port):
        raise InputError(f"the module answers AT on UART{before['uart_port']}; after its restart it would answer on "
                         f"UART{want_port}, not on this port (change it in an image: --image)", file=target,
                         field="--uart-num")
    if new != old:
        if journal is not None:
            journal.record(size, old, new)
        try:
            _write_block(client, size, new)
        except _AT_FAULTS as exc:
            try:
                _write_block(client, size, old)
            except _AT_FAULTS as again:     # the journal entry stays: the next run puts the old block back
                raise incomplete(f"{FACTORY} (block)", exc, [f"{FACTORY} (partly)"], False, again) from exc
            if journal is not None:
                journal.close()
            raise incomplete(f"{FACTORY} (block)", exc, [], True, None) from exc
    m = measure_bytes(client, f"{FACTORY}.sha256", new, lambda: client.sysflash_read(FACTORY, 0, size))
    out.append(m)
    if journal is not None and m.passed:
        journal.close()
    return changes, before, new, old


class UnitBlockJournal:
    """:class:`~atfab.customize.block_journal.BlockJournal` entries of the unit ``mac``."""

    def __init__(self, journal: BlockJournal, mac: str) -> None:
        self.journal, self.mac = journal, mac

    def record(self, size: int, old: bytes, new: bytes) -> None:
        self.journal.record(BlockEntry(self.mac, size, old, new))

    def load(self) -> BlockEntry | None:
        return self.journal.load(self.mac)

    def close(self) -> None:
        self.journal.close(self.mac)


def recover_block(client: Any, journal: UnitBlockJournal, *, target: str, problems: list[str]) -> None:
    """Before anything else: a block rewrite a cut left journalled (:mod:`atfab.customize.block_journal`).
    The partition holding the journalled new or old block closes the entry; an erased or partial one
    gets the journalled old block back (erase, write, read back). Said in ``problems``."""
    entry = journal.load()
    if entry is None:
        return
    held, _size = read_block(client, target)
    where = journal.journal.path(journal.mac)
    if held[:len(entry.new)] == entry.new:
        problems.append(f"{FACTORY}: the journalled block rewrite had finished (the planned block is in place); "
                        f"closed {where}")
    elif held[:len(entry.old)] == entry.old:
        problems.append(f"{FACTORY}: the journalled block rewrite had not started (the old block is in place); "
                        f"closed {where}")
    else:
        state = "erased" if held == b"\xff" * len(held) else "partial"
        _write_block(client, entry.size, entry.old)
        m = measure_bytes(client, f"{FACTORY}.recovered", entry.old,
                          lambda: client.sysflash_read(FACTORY, 0, len(entry.old)))
        if not m.passed:
            raise incomplete_recovery(target, m.describe())
        problems.append(f"{FACTORY} was {state} (a cut block rewrite): put back the journalled old block "
                        f"from {where}")
    journal.close()


def incomplete_recovery(target: str, what: str) -> DeviceError:
    return DeviceError(f"{target}: putting back the journalled {FACTORY} block failed ({what}); the journal "
                       "entry is kept")


def _part(client: Any, part: str, size: int) -> PartitionHead:
    return PartitionHead(client, part, size, BLE_IMAGE if part == BLE else PKI_IMAGE, client.firmware.sysflash_sector)


def _head(client: Any, part: str, size: int) -> bytes | None:
    """The 0xF1F1 (``ble_data``: 0x2795) image at offset 0 of ``part`` (None: none, or longer than the
    partition)."""
    return _part(client, part, size).image_at(0)


def _rewrite(client: Any, part: str, old: bytes | None, image: bytes, size: int) -> None:
    """Through a staged copy in the partition's last sector(s) when there is room (a cut between the
    erase and the write then leaves a whole copy, put back on the next run: :func:`recover_staged`)."""
    ph = _part(client, part, size)
    ph.rewrite(old, image, staged=ph.stage_offset(len(old or b""), len(image)) is not None)


def recover_staged(client: Any, parts: list[str], sizes: dict[str, int], *, problems: list[str]) -> None:
    """Before planning: a partition whose head a cut rewrite left without an image gets the staged copy
    back; a staged copy left beside a whole head is erased (it may hold a key). Said in ``problems``."""
    for part in parts:
        if part not in sizes:
            continue
        ph = _part(client, part, sizes[part])
        found = ph.find_staged()
        if found is None:
            continue
        stage, image = found
        if ph.image_at(0) is None:
            ph.program(0, image, covers=stage)
            problems.append(f"{part} held no image (a cut rewrite): put back the copy staged at {stage}")
        ph.erase(stage, sizes[part] - stage)


def plan_module_items(client: Any, request: CustomizeRequest, *, firmware: FirmwareProfile, target: str,
                      problems: list[str]) -> tuple[dict[str, int], dict[str, bytes], dict[str, bytes | None], list[Change]]:
    """Read the PKI partitions ``request.pki`` names and plan their new images (nothing written):
    ``(sizes, new images, old images, changes)`` (:func:`atfab.customize.legacy_items.plan_items`,
    the planning ``--image`` uses)."""
    sizes = {p.name: p.size for p in client.sysflash_partitions()}
    named = [pki_namespace(c.family, c.kind, firmware) for c in request.pki]
    recover_staged(client, named + ([BLE] if request.gatt is not None or request.gatt_rows else []), sizes,
                   problems=problems)
    new, old, changes = plan_items(request, firmware, sizes=sizes, head=lambda n: _head(client, n, sizes[n]),
                                   target=target)
    ble, ble_old, ble_changes = plan_ble(request, firmware, sizes=sizes, head=lambda n: _head(client, n, sizes[n]),
                                         target=target)
    if ble is not None:
        new[BLE], old[BLE] = ble, ble_old
        changes += ble_changes
    return sizes, new, old, changes


def put_back_block(client: Any, old: bytes, journal: UnitBlockJournal | None = None) -> None:
    """Write the block read before (after a later write of the same run failed); journalled like the
    rewrite (:func:`recover_block` puts it back after a cut)."""
    if journal is not None:
        journal.record(len(old), old, old)
    _write_block(client, len(old), old)
    if journal is not None:
        journal.close()


def write_items(client: Any, planned: tuple[dict[str, int], dict[str, bytes], dict[str, bytes | None], list[Change]],
                *, out: list[Measurement], incomplete: Any) -> dict[str, bytes]:
    """Write :func:`plan_module_items`' images: each partition erased over the sectors of its old and
    new image, written, read back (``partition.<name>.sha256``). A failed write puts back the old
    images of the partitions already touched. Returns the new images."""
    sizes, new, old, _changes = planned
    done: list[str] = []
    for part, image in new.items():
        done.append(part)
        try:
            _rewrite(client, part, old[part], image, sizes[part])
        except _AT_FAULTS as exc:
            try:
                for back in reversed(done):
                    if old[back] is not None:
                        _rewrite(client, back, new[back], old[back], sizes[back])   # type: ignore[arg-type]
            except _AT_FAULTS as again:
                raise incomplete(part, exc, done[:-1], False, again) from exc
            raise incomplete(part, exc, done[:-1], all(old[b] is not None for b in done), None) from exc
        out.append(measure_bytes(client, f"partition.{part}.sha256", image,
                                 lambda part=part, n=len(image): client.sysflash_read(part, 0, n)))
    return new


def items_after_reboot(client: Any, images: dict[str, bytes], out: list[Measurement]) -> None:
    """Each rewritten PKI partition read again after ``AT+RST``."""
    for part, image in images.items():
        out.append(measure_bytes(client, f"partition.{part}.after_reboot", image,
                                 lambda part=part, n=len(image): client.sysflash_read(part, 0, n)))


def module_name_check(client: Any, firmware: FirmwareProfile, name: str) -> Measurement:
    """AT+GMR's Bin version line after a module_name change: it prints the firmware's table entry
    (entry 0 for a name not in it, ground truth §2)."""
    printed = firmware.printed_module_name(name)
    note = None if printed == name else f"{name!r} is not in the firmware's module-name table: it prints {printed!r}"
    return measure(client, GMR_MODULE_NAME, printed, lambda: client.gmr().module_name, detail=note)


def after_reboot(client: Any, request: CustomizeRequest, firmware: FirmwareProfile, uart: Any, before: dict[str, Any],
                 new: bytes, out: list[Measurement]) -> None:
    """The checks after ``AT+RST`` (module docstring)."""
    fpv = request.factory_param
    size = len(new)
    out.append(measure_bytes(client, f"{FACTORY}.after_reboot", new, lambda: client.sysflash_read(FACTORY, 0, size)))
    if "module_name" in fpv:
        out.append(module_name_check(client, firmware, fpv["module_name"]))
    if uart is not None:
        out.append(measure(client, UART_DEF, list(uart), lambda: uart_def_values(client)))
    power = fpv.get("max_tx_power")
    if isinstance(power, int) and not firmware.rfpower_levels:       # G1 takes a level: its readback is not known
        out.append(measure(client, f"{RF_POWER_WIFI}.after_reboot", rfpower_readback(power, firmware),
                           lambda: client.rf_power()[0]))
    keys = ("country_code", "start_channel", "channel_num")
    if firmware.wifi and set(keys) & set(fpv) and firmware.has_command("AT+CWCOUNTRY", "query"):
        want = [fpv.get(k, before.get(k)) for k in keys]
        out.append(measure(client, COUNTRY, want, lambda: country_values(client)))


__all__ = ["put_back_block", "customize_block", "recover_block", "UnitBlockJournal", "after_reboot", "read_block", "plan_module_items", "write_items", "items_after_reboot"]
