#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.
"""Self-signed certificate authority and server certificate for the simulator.

Only ``cryptography`` is used.  Keys are ECDSA P-256 (fast to generate);
the leaf certificate carries the SANs ``127.0.0.1``, ``::1`` and
``localhost`` plus any extra host names or addresses asked for, so a client
that verifies against the CA file (``verify=ca_path``) connects by any of
them.
"""

import datetime
import ipaddress
import os

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.oid import NameOID

DEFAULT_HOSTS = ('127.0.0.1', '::1', 'localhost')


def _name(common_name):
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                           'cinder-tintri VMstore simulator'),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _san(hosts):
    entries = []
    seen = set()
    for host in hosts:
        if not host or host in seen:
            continue
        seen.add(host)
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(entries)


def _write(path, data, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, 'wb') as f:
        f.write(data)
    os.chmod(path, mode)


def make_ca(common_name='VMstore simulator CA', days=30):
    """Return (private key, certificate) of a new self-signed CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = _name(common_name)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0),
                           critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_leaf(ca_key, ca_cert, hosts=DEFAULT_HOSTS, days=30):
    """Return (private key, certificate) of a server certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    hosts = list(DEFAULT_HOSTS) + [h for h in hosts if h]
    ca_ski = ca_cert.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder()
            .subject_name(_name('localhost'))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(_san(hosts), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                           critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False,
                key_agreement=True, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def _pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_ca(directory, common_name='VMstore simulator CA'):
    """Write a CA certificate (only) to ``<directory>/ca.pem``.

    Handy in tests that need a second, unrelated CA.  Returns the path.
    """
    os.makedirs(directory, exist_ok=True)
    _key, cert = make_ca(common_name)
    path = os.path.join(directory, 'ca.pem')
    _write(path, _pem_cert(cert), 0o644)
    return path


def generate(directory, hosts=DEFAULT_HOSTS):
    """Create a CA and a server certificate signed by it in ``directory``.

    Returns a dict with ``ca_path`` (the CA certificate clients verify
    against), ``cert_path`` (server certificate followed by the CA) and
    ``key_path`` (server private key, mode 0600).
    """
    os.makedirs(directory, mode=0o700, exist_ok=True)
    ca_key, ca_cert = make_ca()
    key, cert = make_leaf(ca_key, ca_cert, hosts)
    paths = {
        'ca_path': os.path.join(directory, 'ca.pem'),
        'cert_path': os.path.join(directory, 'server.pem'),
        'key_path': os.path.join(directory, 'server.key'),
    }
    _write(paths['ca_path'], _pem_cert(ca_cert), 0o644)
    _write(paths['cert_path'], _pem_cert(cert) + _pem_cert(ca_cert), 0o644)
    _write(paths['key_path'], _pem_key(key), 0o600)
    return paths
