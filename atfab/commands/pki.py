"""``atfab ca …`` (factory CA, CSR batches, key escrow): parse options, call the library."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..core.errors import InputError
from ..core.inputs import PEM_LIMIT, read_bytes
from ..core.outputs import check_output
from ..core.fsutil import atomic_write

# The heavy parts of the library are imported inside the commands that use them: `atfab --help`, a bad option or
# another command then does not load esptool and the image/PKI stack (docs/DESIGN.md, "Rules").

DEFAULT_PASSPHRASE_ENV = "ATFAB_CA_PASSPHRASE"


def _echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


# ---------------------------------------------------------------------------------------------
# ca

def _passphrase(env_var: str, *, new: bool, what: str = "CA key") -> bytes:
    from ..pki.ca import read_passphrase
    from .prompting import passphrase_prompt

    return read_passphrase(env_var, passphrase_prompt(f"Passphrase for the {what}", confirm=new), new=new, what=what)


def _print_ca(info: dict, as_json: bool) -> None:
    if as_json:
        _echo_json(info)
        return
    for key in ("directory", "subject", "issuer", "key", "serial", "not_before", "not_after", "sha256",
                "path_length", "chain"):
        if key in info:
            click.echo(f"{key:12} {info[key]}")
    kf = info.get("key_file")
    if kf:
        click.echo(f"{'key_file':12} {kf['path']} (mode {kf['mode']}, {'encrypted' if kf['encrypted'] else 'NOT ENCRYPTED'})")


_key_type = click.option("--key-type", type=click.Choice(["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"]),
                         default="ec-p256", show_default=True)
_passphrase_env = click.option("--passphrase-env", default=DEFAULT_PASSPHRASE_ENV, show_default=True,
                               help="environment variable holding the CA key passphrase (prompted when unset)")


@click.group()
def ca() -> None:
    """Factory certificate authority: create, import, show, intermediates; external-CA CSRs."""


@ca.command("init")
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--cn", "common_name", required=True, help="CA common name")
@click.option("--org", "organization", default=None)
@click.option("--country", default=None, help="2-letter country code")
@_key_type
@click.option("--days", type=int, default=3650, show_default=True)
@_passphrase_env
@click.option("--force", is_flag=True, help="replace an existing CA in DIR")
@click.option("--json", "as_json", is_flag=True)
def ca_init(directory: Path, common_name: str, organization, country, key_type: str, days: int,
            passphrase_env: str, force: bool, as_json: bool) -> None:
    """Create a self-signed root CA in DIR (ca.crt, ca.key encrypted, mode 0600)."""
    from ..pki.ca import create_ca, show_ca

    if not force and (directory / "ca.key").exists():
        raise InputError("a CA already exists here (use --force to replace it)", file=directory / "ca.crt")
    pw = _passphrase(passphrase_env, new=True)
    create_ca(directory, common_name=common_name, organization=organization, country=country, key_type=key_type,
              days=days, passphrase=pw, force=force)
    _print_ca(show_ca(directory), as_json)


@ca.command("show")
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--json", "as_json", is_flag=True)
def ca_show(directory: Path, as_json: bool) -> None:
    """Show the CA in DIR (no passphrase needed)."""
    from ..pki.ca import show_ca

    _print_ca(show_ca(directory), as_json)


@ca.command("import")
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--cert", "cert_file", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--key", "key_file", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--chain", "chain_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="issuer certificates above CERT (PEM)")
@click.option("--key-passphrase-env", default=None, help="variable holding the passphrase of an encrypted KEY")
@_passphrase_env
@click.option("--force", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def ca_import(directory: Path, cert_file: Path, key_file: Path, chain_file, key_passphrase_env, passphrase_env: str,
              force: bool, as_json: bool) -> None:
    """Import an existing CA certificate and key into DIR (key re-encrypted with the CA passphrase)."""
    from ..pki.ca import import_ca, show_ca

    key_pw = os.environ.get(key_passphrase_env, "").encode() or None if key_passphrase_env else None
    pw = _passphrase(passphrase_env, new=True)
    import_ca(directory, cert_file, key_file, passphrase=pw, key_passphrase=key_pw, chain_file=chain_file, force=force)
    _print_ca(show_ca(directory), as_json)


@ca.command("intermediate")
@click.option("--parent", "parent_dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--cn", "common_name", required=True)
@click.option("--org", "organization", default=None)
@click.option("--country", default=None)
@_key_type
@click.option("--days", type=int, default=1825, show_default=True)
@click.option("--parent-passphrase-env", default=DEFAULT_PASSPHRASE_ENV, show_default=True)
@_passphrase_env
@click.option("--force", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def ca_intermediate(parent_dir: Path, directory: Path, common_name: str, organization, country, key_type: str,
                    days: int, parent_passphrase_env: str, passphrase_env: str, force: bool, as_json: bool) -> None:
    """Create an intermediate CA in DIR signed by the CA in PARENT."""
    from ..pki.ca import create_intermediate, load_ca, show_ca

    parent = load_ca(parent_dir, _passphrase(parent_passphrase_env, new=False, what="parent CA key"))
    pw = _passphrase(passphrase_env, new=True)
    create_intermediate(parent, directory, common_name=common_name, organization=organization, country=country,
                        key_type=key_type, days=days, passphrase=pw, force=force)
    _print_ca(show_ca(directory), as_json)


def _identity_template(path: Path | None):
    from ..core.inputs import load_toml
    from ..pki.issue import IdentityTemplate

    if path is None:
        return IdentityTemplate()
    data = load_toml(path, "identity template", field="")
    table = data.get("pki", {}).get("identity", data.get("identity", data))
    return IdentityTemplate.from_table(table, source=str(path))


_template = click.option("--template", "template_file", type=click.Path(path_type=Path, dir_okay=False),
                         default=None, help="TOML with [pki.identity] (subject, san_*, days, key_type)")


@ca.command("issue-test")
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False), required=True)
@_template
@click.option("--serial", required=True)
@click.option("--mac", default=None)
@click.option("--module", default=None)
@click.option("--usage", multiple=True, type=click.Choice(["clientAuth", "serverAuth"]), default=("clientAuth",))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="write the certificate (never the key) here")
@_passphrase_env
@click.option("--json", "as_json", is_flag=True)
def ca_issue_test(directory: Path, template_file, serial: str, mac, module, usage, output, passphrase_env: str,
                  as_json: bool) -> None:
    """Issue one throw-away unit certificate to try a template; the key is discarded."""
    from ..pki.ca import load_ca
    from ..pki.issue import identity_values, issue_unit

    if output:
        check_output(output, "certificate", field="--output")
    template = _identity_template(template_file)
    authority = load_ca(directory, _passphrase(passphrase_env, new=False))
    identity = issue_unit(authority, template, identity_values(serial=serial, mac=mac, module=module), usages=usage)
    if output:
        atomic_write(output, identity.cert_file_pem())
    info = identity.public_info()
    if as_json:
        _echo_json(info)
    else:
        for k, v in info.items():
            click.echo(f"{k:12} {v}")


@ca.command("csr-emit")
@_template
@click.option("--serial", "serials", multiple=True, required=True, help="unit serial (repeat)")
@click.option("--usage", multiple=True, type=click.Choice(["clientAuth", "serverAuth"]), default=("clientAuth",))
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--passphrase-env", default=DEFAULT_PASSPHRASE_ENV, show_default=True,
              help="variable holding the passphrase that encrypts the pending keys")
def ca_csr_emit(template_file, serials, usage, out_dir: Path, passphrase_env: str) -> None:
    """External-CA mode: one key + CSR per serial into OUT (csr/*.csr, encrypted pending-keys.json)."""
    from ..pki.csr import emit_csr_batch, write_csr_batch
    from ..pki.issue import identity_values

    template = _identity_template(template_file)
    batch = emit_csr_batch({s: identity_values(serial=s) for s in serials}, template, usages=usage)
    paths = write_csr_batch(batch, out_dir, _passphrase(passphrase_env, new=True, what="pending keys"))
    click.echo(f"{len(paths)} CSRs in {out_dir / 'csr'}")


@ca.command("csr-ingest")
@click.argument("batch_dir", type=click.Path(path_type=Path, file_okay=False))
@click.argument("cert_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--ca-cert", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="CA certificate(s) the signed certificates must chain to")
@click.option("--passphrase-env", default=DEFAULT_PASSPHRASE_ENV, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def ca_csr_ingest(batch_dir: Path, cert_dir: Path, ca_cert, passphrase_env: str, as_json: bool) -> None:
    """Match the signed certificates in CERT_DIR to the batch's units by public key and check them."""
    from ..pki.checks import parse_pem_certs
    from ..pki.csr import ingest_signed, load_csr_batch, read_cert_dir

    batch = load_csr_batch(batch_dir, _passphrase(passphrase_env, new=False, what="pending keys"))
    anchors = parse_pem_certs(read_bytes(ca_cert, "CA certificate", limit=PEM_LIMIT, field="ca_cert"),
                              file=ca_cert, field="ca_cert") if ca_cert else None
    result = ingest_signed(batch, read_cert_dir(cert_dir), anchors=anchors)
    data = {"matched": {uid: ident.public_info() for uid, ident in result.identities.items()},
            "missing": result.missing}
    if as_json:
        _echo_json(data)
    else:
        click.echo(f"{len(result.identities)} matched, {len(result.missing)} missing"
                   + (f": {', '.join(result.missing)}" if result.missing else ""))


@ca.command("escrow-decrypt")
@click.argument("escrow_file", metavar="ESCROW", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--key", "key_file", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="the operator's private key (PEM) the escrow file is encrypted to")
@click.option("--passphrase-env", default=None,
              help="environment variable holding the operator key passphrase (prompted when the key is "
                   "encrypted and this is not given)")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="write the decrypted unit keys (PEM) to this file, mode 0600")
@click.option("--stdout", "to_stdout", is_flag=True, help="print the decrypted unit keys to standard output")
@click.option("--json", "as_json", is_flag=True, help="print what was decrypted (units, fingerprints; no keys) as JSON")
def ca_escrow_decrypt(escrow_file: Path, key_file: Path, passphrase_env: str | None, output: Path | None,
                      to_stdout: bool, as_json: bool) -> None:
    """Decrypt a key escrow file with the operator's private key (keys go only to -o FILE or --stdout)."""
    from ..pki.escrow import decrypt_records, load_operator_key, pem_bundle

    if output is None and not to_stdout:
        raise InputError("give -o FILE for the decrypted keys (or --stdout to print them)", field="--output")
    if to_stdout and (output is not None or as_json):
        raise InputError("--stdout prints the keys and nothing else: drop -o/--json", field="--stdout")
    if output is not None:
        check_output(output, "decrypted keys", field="--output")

    def passphrase() -> bytes:
        return _passphrase(passphrase_env or "", new=False, what="operator key")

    records = decrypt_records(escrow_file, load_operator_key(key_file, passphrase))
    bundle = pem_bundle(records)
    if to_stdout:
        click.echo(bundle.decode("ascii"), nl=False)
        return
    atomic_write(output, bundle, mode=0o600)
    facts = [{"unit": r.unit, "info": r.info, "cert_sha256": r.cert_sha256, "spki_sha256": r.spki_sha256}
             for r in records]
    if as_json:
        _echo_json({"escrow": str(escrow_file), "output": str(output), "keys": facts})
    else:
        click.echo(f"{output}: {len(records)} key(s) of {len({r.unit for r in records})} unit(s) (mode 0600)")
