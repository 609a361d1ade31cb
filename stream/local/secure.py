"""The local broker's security (``heartrisk kafka up --secure``): a CA, certificates, SCRAM users, ACLs.

Under ``<state>/security/`` it writes a local CA (``ca.pem``), a certificate and
key per principal (``broker``, ``admin``, ``scorer``, ``producer``, ``operator``;
keys unencrypted PKCS#8, mode 0600, in a 0700 folder: Java's PEM key store
cannot read PBES2-encrypted keys), a SCRAM-SHA-512 password per user, and for each user two credentials files for
``HEARTRISK_KAFKA_SECURITY_FILE``: ``<user>-sasl.json`` (SASL_SSL on the client
port) and ``<user>-mtls.json`` (mutual TLS on the TLS port). A certificate's CN
is its principal, as its SCRAM user name is, so one set of ACLs serves both.

ACLs (the broker runs Kafka's ``StandardAuthorizer``; ``broker`` and ``admin``
are super users; nothing else is allowed unless granted):
- ``scorer`` reads the input topic, writes predictions, dead letters and shadow
  scores, and uses its lag group (prefixed by the query name);
- ``producer`` only writes the input topic;
- ``operator`` reads the three output topics (``heartrisk tail``).
The controller listener is TLS too, with the broker's own certificate, so no
anonymous principal needs any right.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import secrets
from pathlib import Path
from typing import Any

from stream.config import Settings

USERS = ("admin", "scorer", "producer", "operator")
MECHANISM = "SCRAM-SHA-512"
VALID_DAYS = 825


def _write_secret(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


class SecurityDir:
    """The security material of one local broker."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "security"

    @property
    def exists(self) -> bool:
        """Whether the material was made (the broker is then secure)."""
        return (self.dir / "ca.pem").is_file()

    def password(self, user: str) -> str:
        """A SCRAM user's password."""
        return (self.dir / f"{user}.password").read_text().strip()

    def credentials_file(self, user: str, mtls: bool = False) -> Path:
        """The credentials file of a user, for SASL_SSL or for mutual TLS."""
        return self.dir / f"{user}-{'mtls' if mtls else 'sasl'}.json"

    def create(self) -> None:
        """Make the CA, every principal's certificate and key, the SCRAM passwords and credentials files (once)."""
        if self.exists:
            return
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "heartrisk local CA")])
        ca = (
            x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        (self.dir / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        for principal in ("broker", *USERS):
            key = ec.generate_private_key(ec.SECP256R1())
            builder = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, principal)]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            )
            cert = builder.sign(ca_key, hashes.SHA256())
            # unencrypted PKCS#8, readable by the owner only: Java's PEM key store cannot read PBES2-encrypted keys
            _write_secret(self.dir / f"{principal}.key", key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()).decode())
            (self.dir / f"{principal}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            _write_secret(self.dir / f"{principal}.keystore.pem",
                          (self.dir / f"{principal}.key").read_text() + (self.dir / f"{principal}.crt").read_text())
        for user in USERS:
            _write_secret(self.dir / f"{user}.password", secrets.token_urlsafe(24))
            self.credentials_file(user).write_text(json.dumps({
                "security_protocol": "SASL_SSL", "sasl_mechanism": MECHANISM, "username": user,
                "password_file": f"{user}.password", "ca_file": "ca.pem"}, indent=2) + "\n")
            self.credentials_file(user, mtls=True).write_text(json.dumps({
                "security_protocol": "SSL", "ca_file": "ca.pem", "cert_file": f"{user}.crt",
                "key_file": f"{user}.key"}, indent=2) + "\n")

    def scram_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create every SCRAM user."""
        args = []
        for user in USERS:
            args += ["--add-scram", f"{MECHANISM}=[name={user},password={self.password(user)}]"]
        return args

    def server_properties(self, port: int, tls_port: int, controller_port: int) -> list[str]:
        """The broker's listeners and security: SASL_SSL, mutual TLS, a TLS controller, the authorizer."""
        d = self.dir
        return [
            f"listeners=SASL_SSL://localhost:{port},SSL://localhost:{tls_port},"
            f"CONTROLLER://localhost:{controller_port}",
            f"advertised.listeners=SASL_SSL://localhost:{port},SSL://localhost:{tls_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=SSL",
            "listener.security.protocol.map=CONTROLLER:SSL,SASL_SSL:SASL_SSL,SSL:SSL",
            f"sasl.enabled.mechanisms={MECHANISM}",
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={d / 'broker.keystore.pem'}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={d / 'ca.pem'}",
            "listener.name.ssl.ssl.client.auth=required",
            "listener.name.controller.ssl.client.auth=required",
            "ssl.principal.mapping.rules=RULE:^CN=([^,]+)$/$1/,DEFAULT",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users=User:broker;User:admin",
            "allow.everyone.if.no.acl.found=false",
        ]


def grants(settings: Settings) -> list[tuple[str, str, str, str, str]]:
    """(principal, resource type, pattern type, name, operation) for every ACL the local secure broker gets."""
    out = [("scorer", "TOPIC", "LITERAL", settings.input_topic, op) for op in ("READ", "DESCRIBE")]
    for topic in (settings.output_topic, settings.dlq_topic, settings.shadow_topic):
        out += [("scorer", "TOPIC", "LITERAL", topic, op) for op in ("WRITE", "DESCRIBE")]
        out += [("operator", "TOPIC", "LITERAL", topic, op) for op in ("READ", "DESCRIBE")]
    out += [("scorer", "GROUP", "PREFIXED", settings.query_name, op) for op in ("READ", "DESCRIBE")]
    out += [("scorer", "GROUP", "PREFIXED", "spark-kafka-source-", "READ")]
    out += [("producer", "TOPIC", "LITERAL", settings.input_topic, op) for op in ("WRITE", "DESCRIBE")]
    out += [("operator", "GROUP", "PREFIXED", "heartrisk-tail-", "READ")]
    # --delivery exactly-once: its transactions (heartrisk-<query id>) and its commit markers
    out += [("scorer", "TRANSACTIONAL_ID", "PREFIXED", "heartrisk-", op) for op in ("WRITE", "DESCRIBE")]
    out += [("scorer", "TOPIC", "LITERAL", settings.commit_topic, op) for op in ("READ", "WRITE", "DESCRIBE")]
    return out


def create_acls(admin_conf: dict[str, Any], settings: Settings, timeout_s: float = 30.0) -> int:
    """Create the ACLs of ``grants`` (idempotent: Kafka keeps one of each); returns how many."""
    import confluent_kafka.admin

    kadmin: Any = confluent_kafka.admin  # its ACL types are not in its stubs' exports


    bindings = [
        kadmin.AclBinding(kadmin.ResourceType[rtype], name, kadmin.ResourcePatternType[ptype], f"User:{principal}",
                          "*", kadmin.AclOperation[op], kadmin.AclPermissionType.ALLOW)
        for principal, rtype, ptype, name, op in grants(settings)
    ]
    admin = kadmin.AdminClient(admin_conf)
    for future in admin.create_acls(bindings, request_timeout=timeout_s).values():
        future.result()
    return len(bindings)
