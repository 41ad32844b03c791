"""The local control plane's certificates: the admin is in system:masters, the server cert is valid for
127.0.0.1 and both chain to the run's own CA; keys are readable by the owner only."""

from __future__ import annotations

import ipaddress
import pathlib
import stat

from cryptography import x509
from cryptography.x509.oid import NameOID

from mlrollouts.localstack import certs


def _load(path: pathlib.Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_admin_is_a_system_master_and_everything_chains_to_the_ca(tmp_path: pathlib.Path) -> None:
    files = certs.generate(tmp_path)
    ca, admin, serving = _load(files.ca_cert), _load(files.admin_cert), _load(files.serving_cert)
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    for leaf in (admin, serving):
        leaf.verify_directly_issued_by(ca)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    for key in (files.admin_key, files.serving_key, files.service_account_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_each_run_gets_a_fresh_ca(tmp_path: pathlib.Path) -> None:
    first, second = certs.generate(tmp_path / "a"), certs.generate(tmp_path / "b")
    assert first.ca_cert.read_bytes() != second.ca_cert.read_bytes()
