"""raw_data-like input trees for build tests: esp-at's folder and file names, certificates and keys
made at test time (EC P-256; nothing key-shaped is committed)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests import esp_at_reference as ref

DEFAULT = {
    "server_cert": ["server_cert.crt"], "server_key": ["server.key"], "server_ca": ["server_ca.crt"],
    "client_cert": ["client_cert_00.crt", "client_cert_01.crt"], "client_key": ["client_key_00.key", "client_key_01.key"],
    "client_ca": ["client_ca_00.crt", "client_ca_01.crt"],
    "mqtt_cert": ["mqtt_client.crt"], "mqtt_key": ["mqtt_client.key"], "mqtt_ca": ["mqtt_ca.crt"],
}
FULL = {
    **DEFAULT,
    "wpa_ent_cert": ["wpa_ent_client.crt"], "wpa_ent_key": ["wpa_ent_client.key"], "wpa_ent_ca": ["wpa_ent_ca.pem"],
    **{f"{s}_{k}": [f"{s}_{'client' if k != 'ca' else 'ca'}_0{i}.{'key' if k == 'key' else 'crt'}" for i in range(2)]
       for s in ("https", "wss") for k in ("cert", "key", "ca")},
}
CLIENTS3 = {**DEFAULT, **{f"client_{k}": [f"client_{k}_{i:02d}.{'key' if k == 'key' else 'crt'}" for i in range(3)]
                          for k in ("cert", "key", "ca")}}


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Material:
    """Certificates and keys made at test time, one per raw_data file name (EC P-256)."""

    def __init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.now = dt.datetime.now(dt.timezone.utc)
        self._files: dict[str, bytes] = {}

    def _cert(self, cn: str, key, *, ca: bool) -> bytes:
        b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn if ca else "parity CA"))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(self.now - dt.timedelta(days=1)).not_valid_after(self.now + dt.timedelta(days=365))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        return b.sign(key if ca else self.ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def file(self, folder: str, name: str) -> bytes:
        tag = f"{folder}/{name}"
        if tag not in self._files:
            key = ec.generate_private_key(ec.SECP256R1())
            if folder.endswith("_key"):
                data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
            else:
                data = self._cert(tag, key, ca=folder.endswith("_ca"))
            self._files[tag] = data
        return self._files[tag]



def raw_tree(root: Path, layout: dict[str, list[str]], material: Material, *, factory_param: bool = True,
             ble_data: bool = True) -> Path:
    """A raw_data tree at ``root``: the PKI files of ``layout``, esp-at's gatts_data.csv and factory_param CSVs."""
    for folder, files in layout.items():
        (root / folder).mkdir(parents=True)
        for f in files:
            (root / folder / f).write_bytes(material.file(folder, f))
    root.mkdir(parents=True, exist_ok=True)
    if ble_data:
        (root / "ble_data").mkdir()
        shutil.copyfile(ref.GATTS_DATA, root / "ble_data" / "gatts_data.csv")
    if factory_param:
        (root / "factory_param").mkdir()
        shutil.copyfile(ref.FACTORY_DATA, root / "factory_param" / "factory_param_data.csv")
        shutil.copyfile(ref.FACTORY_TYPE, root / "factory_param" / "factory_param_type.csv")
    return root
