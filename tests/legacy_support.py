"""Test material for the legacy (G1/G2) layouts, made at test time: a raw_data-like folder of the
shape esp-at's legacy builds read (PKI folders per partition, ``ble_data/example.csv``,
``factory_param/factory_param_data.csv`` in the era's columns), and expected images written
from the documented rules (reference §10, notes §2) - independently of atfab's encoders."""

from __future__ import annotations

import datetime as dt
import json
import struct
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)

#: factory_param_data.csv header and WROOM-32 row of each era (esp-at raw_data at the tags).
FACTORY_CSV = {
    "v1.1.3": ("module_name,magic_flag,version,module_id,tx_max_power,start_channel,channel_num,country_code,"
               "uart_baudrate,uart_tx_pin,uart_rx_pin,uart_ctx_pin,uart_rts_pin",
               "WROOM-32,0xfcfc,1,1,1,1,13,CN,115200,17,16,15,14"),
    "v2.0": ("platform,module_name,magic_flag,version,module_id,tx_max_power,start_channel,channel_num,country_code,"
             "uart_baudrate,uart_tx_pin,uart_rx_pin,uart_ctx_pin,uart_rts_pin,tx_control_pin,rx_control_pin",
             "PLATFORM_ESP32,WROOM-32,0xfcfc,1,1,78,1,13,CN,115200,17,16,15,14,-1,-1"),
    "v2.1": ("platform,module_name,magic_flag,version,module_id,tx_max_power,uart_port,start_channel,channel_num,"
             "country_code,uart_baudrate,uart_tx_pin,uart_rx_pin,uart_ctx_pin,uart_rts_pin,tx_control_pin,rx_control_pin",
             "PLATFORM_ESP32,WROOM-32,0xfcfc,2,1,78,1,1,13,CN,115200,17,16,15,14,-1,-1"),
    "v2.2": ("platform,module_name,description,magic_flag,version,reserved1,tx_max_power,uart_port,start_channel,"
             "channel_num,country_code,uart_baudrate,uart_tx_pin,uart_rx_pin,uart_cts_pin,uart_rts_pin,tx_control_pin,"
             "rx_control_pin", "PLATFORM_ESP32,WROOM-32,,0xfcfc,3,0,78,1,1,13,CN,115200,17,16,15,14,-1,-1"),
}
GATT_CSV = ("index,uuid_len,uuid,perm,val_max_len,val_cur_len,value\n"
            "0,16,0x2800,0x01,2,2,A002\n1,16,0x2803,0x01,1,1,02\n2,16,0xC300,0x01,,3,ABC\n,,,,,,\n")


def make_pair(cn: str, issuer: tuple | None = None) -> tuple[bytes, bytes, object]:
    """(certificate PEM, private key PEM, key object): EC P-256, signed by ``issuer`` (cert, key) or self."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    icert, ikey = issuer if issuer else (None, key)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(icert.subject if icert else name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=3650))
            .sign(ikey, hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), pem, (cert, key)


def make_raw_data(folder: Path, *, factory: str | None = "v2.2", partitions: tuple[str, ...] = (
        "client_cert", "client_key", "client_ca"), der: bool = False) -> dict[str, list[bytes]]:
    """A raw_data-like folder; returns the file bytes per partition in name order."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_pem, _ca_key, ca = make_pair("Legacy Test CA")
    files: dict[str, list[bytes]] = {}
    pairs = [make_pair(f"unit-{i}", ca) for i in range(2)]
    for part in partitions:
        sub = folder / part
        sub.mkdir()
        if part.endswith("_key"):
            items = [(f"key_{i:02d}.key", pem) for i, (_c, pem, _o) in enumerate(pairs)]
        elif part.endswith("_ca"):
            items = [("ca_00.crt", ca_pem)]
        else:
            items = [(f"cert_{i:02d}.crt", c) for i, (c, _k, _o) in enumerate(pairs)]
            if der:
                cert = x509.load_pem_x509_certificate(pairs[0][0])
                items.append(("cert_02.der", cert.public_bytes(serialization.Encoding.DER)))
        for name, data in items:
            (sub / name).write_bytes(data)
        files[part] = [data for _n, data in sorted(items)]
    (folder / "ble_data").mkdir()
    (folder / "ble_data" / "example.csv").write_text(GATT_CSV)
    if factory is not None:
        (folder / "factory_param").mkdir()
        header, row = FACTORY_CSV[factory]
        (folder / "factory_param" / "factory_param_data.csv").write_text(f"{header}\n{row}\n")
    return files


# ----------------------------------------------------------------- expected bytes from the rules


def expected_pki(files: list[bytes], type_: int) -> bytes:
    """§10.2: F1F1 | count | total | (type, id, len, data, FF pad to 4) per file."""
    body = b""
    for i, data in enumerate(files):
        body += bytes([type_, i]) + struct.pack("<H", len(data)) + data + b"\xff" * (-len(data) % 4)
    return b"\xf1\xf1" + struct.pack("<HI", len(files), len(body)) + body


def expected_ble(objects: list[dict], keys: tuple[str, ...]) -> bytes:
    """§10.3: len16 | 27 95 | json.dumps({"Service": [...]}) with the keys in ``keys`` order."""
    text = json.dumps({"Service": [{k: o[k] for k in keys} for o in objects]}).encode()
    return struct.pack("<H", len(text)) + b"\x27\x95" + text


#: The rows of :data:`GATT_CSV` as BLEService writes them.
GATT_OBJECTS = [
    {"index": 0, "uuid_len": 16, "uuid": "2800", "perm": 1, "val_max_len": 2, "val_cur_len": 2, "value": "A002"},
    {"index": 1, "uuid_len": 16, "uuid": "2803", "perm": 1, "val_max_len": 1, "val_cur_len": 1, "value": "02"},
    {"index": 2, "uuid_len": 16, "uuid": "C300", "perm": 1, "val_max_len": 512, "val_cur_len": 3, "value": "AB0C"},
]
