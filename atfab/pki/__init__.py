"""Factory PKI: CA (:mod:`.ca`), unit identities (:mod:`.issue`), external-CA CSRs (:mod:`.csr`),
slot → namespace mapping (:mod:`.slots`), pre-use checks (:mod:`.checks`), key escrow (:mod:`.escrow`).

Private keys stay in memory; they leave only through ``UnitIdentity.private_key_pem_for_mfg``
(into the mfg_nvs image), encrypted CA/pending-key files, and escrow records encrypted to an
operator's public key.
"""

from .ca import CertificateAuthority, create_ca, create_intermediate, import_ca, load_ca, read_passphrase, show_ca
from .issue import IdentityTemplate, UnitIdentity, identity_values, issue_unit
from .keys import KEY_TYPES, generate_key

__all__ = ["CertificateAuthority", "create_ca", "create_intermediate", "import_ca", "load_ca", "read_passphrase",
           "show_ca", "IdentityTemplate", "UnitIdentity", "identity_values", "issue_unit", "KEY_TYPES",
           "generate_key"]
