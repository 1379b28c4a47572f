"""Transport security and signing: verified STARTTLS with a private CA, DKIM, header injection."""

from __future__ import annotations

import ssl
import subprocess
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from conftest import Recorder, edit_config, free_port, run, write_config

AT = "2026-11-27T09:00:00+00:00"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A private CA and a server certificate for 127.0.0.1 / localhost, made with openssl."""
    d = tmp_path_factory.mktemp("pki")

    def ssl_(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ssl_("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
         "-subj", "/CN=newsletter test CA")
    ssl_("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
         "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ssl_("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    ssl_("genrsa", "-out", "dkim.key", "2048")
    ssl_("rsa", "-in", "dkim.key", "-pubout", "-out", "dkim.pub")
    return {name: d / name for name in ("ca.pem", "server.pem", "server.key", "dkim.key", "dkim.pub")}


@pytest.fixture
def tls_server(certs: dict[str, Path]):  # noqa: ANN201
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs["server.pem"], certs["server.key"])
    handler, port = Recorder(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def test_starttls_with_a_verified_certificate_delivers(tls_server, certs: dict[str, Path], tmp_path: Path) -> None:
    recorder, port = tls_server
    project = write_config(tmp_path, port=port)
    edit_config(project, lambda d: d["newsletter"]["smtp"].update(tls="starttls", ca_file=str(certs["ca.pem"])))
    assert run("--file", str(project), "send", "--at", AT) == 0
    assert len(recorder.messages) == 2


def test_an_unverifiable_certificate_is_refused(tls_server, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    recorder, port = tls_server
    project = write_config(tmp_path, port=port)
    edit_config(project, lambda d: d["newsletter"]["smtp"].update(tls="starttls", retries=0))
    assert run("--file", str(project), "send", "--at", AT) == 3
    assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err
    assert recorder.messages == []


def test_dkim_signature_covers_list_unsubscribe_and_verifies(smtp_server, certs: dict[str, Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import dkim

    recorder, port = smtp_server
    project = write_config(tmp_path, port=port, extra="  dkim: {domain: example.org, selector: s1}\n")
    monkeypatch.setenv("NEWSLETTER_DKIM_KEY_FILE", str(certs["dkim.key"]))
    assert run("--file", str(project), "send", "--at", AT) == 0
    public = b"".join(line for line in certs["dkim.pub"].read_bytes().splitlines() if b"-----" not in line)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.example.org."
        return b"v=DKIM1; k=rsa; p=" + public

    assert recorder.messages  # every message checked below is signed
    for _, _, raw in recorder.messages:
        assert raw.startswith(b"DKIM-Signature:")
        header = raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
        signed = header.split(b"h=", 1)[1].split(b";", 1)[0].replace(b" ", b"").lower()
        assert b"list-unsubscribe" in signed and b"from" in signed
        assert dkim.verify(raw, dnsfunc=dns)
        for old, new in ((b"Test_Digest", b"Evil_Digest"), (b"?subject=unsubscribe", b"?subject=subscribe")):
            assert old in raw
            assert not dkim.verify(raw.replace(old, new, 1), dnsfunc=dns)  # subject, List-Unsubscribe


def test_dkim_without_a_key_is_a_clear_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit_config(project, lambda d: d["newsletter"].update(dkim={"domain": "example.org", "selector": "s1"}))
    assert run("--file", str(project), "send", "--at", AT) == 2
    assert "newsletter.dkim is set but NEWSLETTER_DKIM_KEY_FILE is not" in capsys.readouterr().err


def test_hostile_names_never_add_a_header(smtp_server, tmp_path: Path) -> None:
    recorder, port = smtp_server
    subs = ("  - email: ada@example.org\n    name: \"Ada =?UTF-8?Q?=0A?=Bcc: x@evil.example\"\n"
            "    keywords: ['\"language model\"']\n"
            "  - email: bob@example.org\n    name: \"Bob\\r\\nBcc: y@evil.example\"\n    keywords: ['\"language model\"']\n")
    project = write_config(tmp_path, port=port, subscribers=subs)
    edit_config(project, lambda d: d["newsletter"].update(title="Digest\r\nBcc: z@evil.example"))
    assert run("--file", str(project), "send", "--at", AT) == 0
    assert sorted(m[1][0] for m in recorder.messages) == ["ada@example.org", "bob@example.org"]
    for _, rcpts, raw in recorder.messages:
        assert len(rcpts) == 1
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert b"\nBcc" not in head and b"\nbcc" not in head.lower()
        msg = message_from_bytes(raw, policy=policy.default)
        assert msg["Bcc"] is None
        for value in msg.values():
            assert "\n" not in str(value) and "\r" not in str(value)


@pytest.mark.parametrize("smtputf8", [True, False])
def test_internationalised_addresses(tmp_path: Path, smtputf8: bool, capsys: pytest.CaptureFixture[str]) -> None:
    handler, port = Recorder(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=smtputf8)
    controller.start()
    try:
        subs = ("  - email: user@exämple.org\n    name: Zoë\n    keywords: ['\"language model\"']\n"
                "  - email: ñoño@example.org\n    name: Ñandú\n    keywords: ['\"language model\"']\n")
        project = write_config(tmp_path, port=port, subscribers=subs)
        code = run("--file", str(project), "send", "--at", AT)
    finally:
        controller.stop()
    envelopes = sorted(m[1][0] for m in handler.messages)
    if smtputf8:
        assert code == 0 and envelopes == ["user@xn--exmple-cua.org", "ñoño@example.org"]
    else:
        # the IDN domain goes out in its ASCII form; a UTF-8 mailbox needs SMTPUTF8: it fails alone
        assert code == 3 and envelopes == ["user@xn--exmple-cua.org"]
        assert "ñoño@example.org: failed: the server cannot take this message" in capsys.readouterr().err
    to = [message_from_bytes(m[2], policy=policy.default)["To"] for m in handler.messages]
    assert any(str(t) == "Zoë <user@xn--exmple-cua.org>" for t in to)
