"""DNS rebinding against http(s) inputs: the fetcher must connect to the address it checked, never to a second DNS
answer. The test owns name resolution (socket.getaddrinfo answers a public address first, then 127.0.0.1) and the
network (connections to the "public" addresses are routed to a server on 127.0.0.2); a second server on 127.0.0.1,
the private target, must never see a request."""
from __future__ import annotations

import datetime
import http.server
import socket
import ssl
import threading

import pytest
import urllib3.util.connection

from queue_bridge.inputs import InputPolicy, fetch
from queue_bridge.protocol import JobError

PUBLIC, OTHER_PUBLIC, DEAD_PUBLIC = "8.8.8.8", "1.1.1.1", "9.9.9.9"  # never really contacted: routed below
POLICY = InputPolicy(http_allow=["*.rebind.test"])


class Server:
    """Serves a PNG whose bytes name the server, records (path, Host, SNI); /hop/<host> redirects to that host."""

    def __init__(self, name: str, ip: str, port: int, tls: ssl.SSLContext | None = None):
        self.name, self.requests, self.sni = name, [], []
        me = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                me.requests.append((self.path, self.headers.get("Host")))
                if self.path.startswith("/hop/"):
                    scheme = "https" if tls else "http"
                    self.send_response(302)
                    self.send_header("Location", f"{scheme}://{self.path[5:]}:{port}/img")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = b"\x89PNG\r\n\x1a\n" + me.name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer((ip, port), Handler)
        if tls is not None:
            tls.sni_callback = lambda sock, server_name, ctx: self.sni.append(server_name)
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def net(monkeypatch):
    """Fake DNS + routing. `net.answers[name]`: successive answers (an address, or a tuple of them; the last
    repeats)."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, urllib3.util.connection.create_connection

    class Net:
        answers: dict = {}
        lookups: list = []
        connects: list = []

    def getaddrinfo(host, port, *args, **kw):
        if isinstance(host, str) and host in Net.answers:
            seq = Net.answers[host]
            Net.lookups.append(host)
            answer = seq.pop(0) if len(seq) > 1 else seq[0]
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port))
                    for ip in ((answer,) if isinstance(answer, str) else answer)]
        return real_getaddrinfo(host, port, *args, **kw)

    def create_connection(address, *args, **kw):
        Net.connects.append(address)
        if address[0] == DEAD_PUBLIC:
            raise ConnectionRefusedError("unreachable in this test")
        if address[0] in (PUBLIC, OTHER_PUBLIC):  # the "internet": a server on 127.0.0.2
            address = ("127.0.0.2", address[1])
        return real_connect(address, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)
    Net.answers, Net.lookups, Net.connects = {}, [], []
    return Net


def _servers(public_tls=None):
    private = Server("private", "127.0.0.1", 0)
    public = Server("public", "127.0.0.2", private.port, public_tls)  # same port: only the address differs
    return private, public


def test_a_second_dns_answer_never_redirects_the_fetch(net):
    private, public = _servers()
    try:
        net.answers["media.rebind.test"] = [PUBLIC, "127.0.0.1"]  # checked answer, then the rebinding one
        data = fetch(f"http://media.rebind.test:{private.port}/img", POLICY)
        assert data.endswith(b"public")
        assert private.requests == [], "the fetch reached the private address of a second DNS answer"
        assert public.requests == [("/img", f"media.rebind.test:{private.port}")]  # the name's Host header
        assert net.lookups == ["media.rebind.test"] and net.connects == [(PUBLIC, private.port)]

        # Every checked address may be used (in order), still without looking the name up again.
        net.answers["multi.rebind.test"] = [(DEAD_PUBLIC, PUBLIC), "127.0.0.1"]
        net.lookups.clear()
        net.connects.clear()
        assert fetch(f"http://multi.rebind.test:{private.port}/img", POLICY).endswith(b"public")
        assert net.lookups == ["multi.rebind.test"]
        assert net.connects == [(DEAD_PUBLIC, private.port), (PUBLIC, private.port)]
        assert private.requests == []
    finally:
        private.close()
        public.close()


def test_redirects_are_checked_and_pinned_on_every_hop(net):
    private, public = _servers()
    try:
        net.answers["media.rebind.test"] = [PUBLIC, "127.0.0.1"]
        net.answers["other.rebind.test"] = [OTHER_PUBLIC, "127.0.0.1"]
        net.answers["inside.rebind.test"] = ["127.0.0.1"]
        port = private.port
        # A redirect to a name that rebinds after its check: that hop is pinned too.
        assert fetch(f"http://media.rebind.test:{port}/hop/other.rebind.test", POLICY).endswith(b"public")
        assert public.requests == [("/hop/other.rebind.test", f"media.rebind.test:{port}"),
                                   ("/img", f"other.rebind.test:{port}")]
        assert net.connects == [(PUBLIC, port), (OTHER_PUBLIC, port)]
        # A redirect to a name that resolves to a private address is refused before any connection.
        with pytest.raises(JobError) as e:
            fetch(f"http://media.rebind.test:{port}/hop/inside.rebind.test", POLICY)
        assert e.value.code == "private_address"
        assert private.requests == []
    finally:
        private.close()
        public.close()


def test_https_connects_to_the_checked_address_with_sni_and_the_certificate_of_the_name(net, tmp_path, monkeypatch):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "media.rebind.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("media.rebind.test")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "cert.pem"))  # trust the test's certificate
    private, public = _servers(public_tls=tls)
    try:
        net.answers["media.rebind.test"] = [PUBLIC, "127.0.0.1"]
        assert fetch(f"https://media.rebind.test:{private.port}/img", POLICY).endswith(b"public")
        assert public.sni == ["media.rebind.test"], "SNI carries the name, not the pinned address"
        assert public.requests == [("/img", f"media.rebind.test:{private.port}")]
        assert net.connects == [(PUBLIC, private.port)] and private.requests == []
        # The certificate is checked against the URL's name: one for another name is refused.
        net.answers["other.rebind.test"] = [PUBLIC]
        with pytest.raises(JobError) as e:
            fetch(f"https://other.rebind.test:{private.port}/img", POLICY)
        assert e.value.code == "input_unavailable"
        assert "certificate" in e.value.message.lower() or "SSL" in e.value.message, e.value.message
    finally:
        private.close()
        public.close()
