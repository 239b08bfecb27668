"""TLS certificates for a cluster of one's own: a private certificate authority and one
certificate it signs, in the file names ``cluster_configs/*.yaml`` use (``daskgmm certificates``).

Dask's TLS (``distributed.Security``) authenticates both ends with certificates signed by the
CA named in ``tls_ca_file`` and does not check host names, so one certificate serves the
scheduler, the workers and the client. Whoever holds ``key.pem`` (or ``ca-key.pem``) can join
the cluster and run code on it: keep the folder private (the keys are written mode 0600).

Made with the ``cryptography`` package (``pip install 'daskgmm[tls]'``).
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

FILES = ("ca.pem", "ca-key.pem", "cert.pem", "key.pem")


def make_certificates(folder, days: int = 365, common_name: str = "daskgmm cluster") -> list:
    """Write ``ca.pem``, ``ca-key.pem``, ``cert.pem`` and ``key.pem`` into ``folder`` (made if
    needed); refuses to replace any of them. Returns the paths written."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise RuntimeError(
            "making certificates needs the cryptography package: pip install 'daskgmm[tls]'"
        ) from None
    folder = Path(folder).expanduser()
    existing = [name for name in FILES if (folder / name).exists()]
    if existing:
        raise FileExistsError(f"{folder} already holds {existing}: certificates are never replaced; "
                              "remove them first to make new ones (every host then needs the new ones).")
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(text):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def builder(subject, issuer, public_key):
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=days)))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name(f"{common_name} CA")
    ca_cert = (builder(ca_name, ca_name, ca_key.public_key())
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (builder(name(common_name), ca_name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))

    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)

    def private(k):
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    contents = {"ca.pem": ca_cert.public_bytes(serialization.Encoding.PEM), "ca-key.pem": private(ca_key),
                "cert.pem": cert.public_bytes(serialization.Encoding.PEM), "key.pem": private(key)}
    written = []
    for file_name, data in contents.items():
        path = folder / file_name
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if "key" in file_name else 0o644)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        written.append(path)
    return written
