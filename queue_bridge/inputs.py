"""Fetching a job's input files safely: s3:// objects, http(s) URLs on an allow-list (only globally routable unicast
addresses, checked after DNS resolution, and the connection made to the very address that was checked, so a second
DNS answer cannot point it elsewhere; every redirect checked and pinned again), or paths under a configured root.
Bytes are checked against a size limit and sniffed for a supported format before ComfyUI sees them. Messages never
carry the user:password a URL may hold (`redact`)."""
from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import unquote, urljoin, urlparse

from sonicflow_contract import MEDIA_EXT, media_format

from .protocol import JobError


@dataclass
class InputPolicy:
    input_root: str | None = None  # paths must resolve under it; None = path inputs refused
    http_allow: list = field(default_factory=list)  # host globs, e.g. ["media.example.com", "*.cdn.example.com"]
    allow_private_networks: bool = False  # only for tests on loopback; never in production
    max_bytes: int = 200 * 1024 * 1024
    s3_endpoint: str = ""
    # A server that drips bytes must not hold a fetch (and its thread) for long: the whole fetch, headers included,
    # has a deadline, and after a grace period the body must keep arriving at a minimum average rate.
    deadline_s: float = 120.0
    min_rate_bps: float = 64 * 1024
    rate_grace_s: float = 5.0


# Ranges `ipaddress.is_global` still calls global that no fetch should reach: relays and translators that lead back
# into someone's network (6to4 2002::/16 and its anycast relays 192.88.99.0/24), IETF protocol assignments
# (192.0.0.0/24), deprecated IPv6 site-local fec0::/10 and the local-use NAT64 prefix 64:ff9b:1::/48. Multicast and
# reserved addresses are refused separately; the well-known NAT64 prefix 64:ff9b::/96 is judged by the IPv4
# address it embeds (on a DNS64 network every IPv4-only site resolves into it).
NOT_PUBLIC = tuple(ipaddress.ip_network(n) for n in ("2002::/16", "192.88.99.0/24", "192.0.0.0/24", "fec0::/10",
                                                      "64:ff9b:1::/48"))
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable unicast only: what an outsider's URL may make this service connect to."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return is_public(ip.ipv4_mapped)
        if ip in NAT64:
            return is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.is_multicast or ip.is_reserved or not ip.is_global:
        return False
    return not any(ip in net for net in NOT_PUBLIC if net.version == ip.version)


def redact(url: str) -> str:
    """`url` without the user:password a client may have put in it (errors, logs and dead-letter headers)."""
    p = urlparse(url)
    if not (p.username or p.password):
        return url
    return p._replace(netloc="***@" + p.netloc.rsplit("@", 1)[1]).geturl()


def check_addresses(host: str, port: int, policy: InputPolicy) -> list[str]:
    """Resolve `host` once and refuse it if any answer is not a public unicast address (is_public); return the
    addresses. Callers must connect to these very addresses: a second lookup could get another answer (DNS
    rebinding)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, ValueError) as e:  # UnicodeError: a label over 63 characters
        raise JobError("input_unavailable", f"cannot resolve {host[:80]}: {type(e).__name__}") from None
    addresses = []
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if not policy.allow_private_networks and not is_public(ip):
            raise JobError("private_address", f"{host} resolves to {ip}, not a public unicast address")
        if str(ip) not in addresses:
            addresses.append(str(ip))
    return addresses


class _Deadline:
    """Shuts the sockets of one fetch down when its deadline passes, whatever they are waiting for: a per-read
    timeout alone lets a server that sends one byte just inside it keep a fetch alive for ever."""

    def __init__(self, seconds: float):
        self.start = time.monotonic()
        self.at = self.start + seconds
        self.sockets: list = []
        self.expired = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def watch(self, sock) -> None:
        with self._lock:
            self.sockets.append(sock)
            expired = self.expired
        if expired:
            self._shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self.sockets)
        for sock in sockets:
            self._shutdown(sock)

    @staticmethod
    def _shutdown(sock) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def cancel(self) -> None:
        self._timer.cancel()


def _watched(connection_cls, deadline: _Deadline):
    """A urllib3 connection class whose socket the deadline can shut down."""

    class Watched(connection_cls):
        def connect(self):
            super().connect()
            deadline.watch(self.sock)

    return Watched


def _get_pinned(url: str, addresses: list[str], deadline: _Deadline):
    """GET `url` on one of the checked `addresses` (never a fresh DNS lookup), with the URL's own Host header, TLS
    SNI and certificate name. No redirects followed, no environment proxies (a proxy would resolve the name again)."""
    import certifi
    import urllib3

    p = urlparse(url)
    port = p.port or (443 if p.scheme == "https" else 80)
    headers = {"Host": p.netloc.rsplit("@", 1)[-1], "User-Agent": "sonicflow-bridge", "Accept-Encoding": "identity"}
    if p.username:  # what requests did with user:pass@ in a URL
        headers.update(urllib3.make_headers(basic_auth=f"{unquote(p.username)}:{unquote(p.password or '')}"))
    target = (p.path or "/") + (f"?{p.query}" if p.query else "")
    timeout = urllib3.Timeout(connect=min(5.0, deadline.remaining()), read=min(30.0, deadline.remaining()))
    for i, ip in enumerate(addresses):
        if p.scheme == "https":  # certificate checked against the name, on a connection to the checked address
            ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or certifi.where()  # the bundle requests would use
            pool = urllib3.HTTPSConnectionPool(ip, port, timeout=timeout, retries=False, server_hostname=p.hostname,
                                               assert_hostname=p.hostname, cert_reqs="CERT_REQUIRED",
                                               ca_certs=ca_bundle)
        else:
            pool = urllib3.HTTPConnectionPool(ip, port, timeout=timeout, retries=False)
        pool.ConnectionCls = _watched(pool.ConnectionCls, deadline)
        try:
            return pool.urlopen("GET", target, headers=headers, redirect=False, preload_content=False,
                                assert_same_host=False)
        except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError):
            if i == len(addresses) - 1:  # like a resolver-driven connect: try the next checked address
                raise


def _too_slow(deadline: _Deadline, received: int, policy: InputPolicy) -> bool:
    elapsed = time.monotonic() - deadline.start
    return elapsed > policy.rate_grace_s and received < policy.min_rate_bps * (elapsed - policy.rate_grace_s)


def _fetch_http(url: str, policy: InputPolicy, hops: int = 3) -> bytes:
    deadline = _Deadline(policy.deadline_s)
    try:
        return _fetch_http_within(url, policy, hops, deadline)
    finally:
        deadline.cancel()


def _slow(url: str, policy: InputPolicy) -> JobError:
    return JobError("input_unavailable", f"GET {redact(url)}: the server sent too slowly (at least "
                                         f"{policy.min_rate_bps / 1024:.0f} KiB/s and {policy.deadline_s:g} s in all)")


def _fetch_http_within(url: str, policy: InputPolicy, hops: int, deadline: _Deadline) -> bytes:
    import urllib3

    for _ in range(hops + 1):
        p = urlparse(url)
        host = (p.hostname or "").lower()
        if not any(fnmatch.fnmatch(host, pat.lower()) for pat in policy.http_allow):
            raise JobError("host_not_allowed", f"{host or redact(url)} is not on the worker's http allow-list")
        addresses = check_addresses(host, p.port or (443 if p.scheme == "https" else 80), policy)
        try:
            r = _get_pinned(url, addresses, deadline)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            if deadline.expired:
                raise _slow(url, policy) from None
            raise JobError("input_unavailable", f"GET {redact(url)}: {type(e).__name__}: {e}"[:400]) from None
        try:
            location = r.get_redirect_location()
            if location:  # each hop is checked (allow-list, addresses) and pinned again
                url = urljoin(url, location)
                if urlparse(url).scheme not in ("http", "https"):
                    raise JobError("scheme_not_allowed", f"redirect to {redact(url)}")
                continue
            if r.status == 404 or r.status == 410:
                raise JobError("input_not_found", f"GET {redact(url)}: {r.status}")
            if r.status >= 500 or r.status == 429:
                raise JobError("input_unavailable", f"GET {redact(url)}: {r.status}")
            if r.status != 200:
                raise JobError("input_not_found", f"GET {redact(url)}: {r.status}")
            try:
                declared = int(r.headers.get("content-length") or 0)
            except ValueError:  # a server that cannot say how long its answer is
                raise JobError("input_unavailable", f"GET {redact(url)}: a malformed Content-Length") from None
            if declared > policy.max_bytes:
                raise JobError("input_too_large", f"{redact(url)}: {declared} bytes > limit {policy.max_bytes}")
            buf = bytearray()
            try:
                while True:
                    chunk = r.read1(1 << 16)  # what has arrived: the rate is checked between reads
                    if not chunk:
                        break
                    buf += chunk
                    if len(buf) > policy.max_bytes:
                        raise JobError("input_too_large", f"{redact(url)}: more than {policy.max_bytes} bytes")
                    if _too_slow(deadline, len(buf), policy):
                        raise _slow(url, policy)
            except (urllib3.exceptions.HTTPError, OSError) as e:
                if deadline.expired or _too_slow(deadline, len(buf), policy):
                    raise _slow(url, policy) from None
                raise JobError("input_unavailable", f"GET {redact(url)}: {type(e).__name__}: {e}"[:400]) from None
            if deadline.expired:  # the deadline shut the socket: what arrived is not the whole file
                raise _slow(url, policy)
            return bytes(buf)
        finally:
            r.close()
    raise JobError("input_not_found", f"{redact(url)}: too many redirects")


def _fetch_s3(url: str, policy: InputPolicy) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    from sonic_core import s3_client  # same credentials and endpoint settings as Publish

    p = urlparse(url)
    bucket, key = p.netloc, p.path.lstrip("/")
    if not bucket or not key:
        raise JobError("input_not_found", f"{url}: needs s3://bucket/key")
    client = s3_client(policy.s3_endpoint)
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        if head["ContentLength"] > policy.max_bytes:
            raise JobError("input_too_large", f"{url}: {head['ContentLength']} bytes > limit {policy.max_bytes}")
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code")
        if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket", "403", "AccessDenied"):
            raise JobError("input_not_found", f"{url}: {code}") from None
        raise JobError("storage_unavailable", f"{url}: {e}") from None
    except BotoCoreError as e:
        raise JobError("storage_unavailable", f"{url}: {e}") from None


def _fetch_path(location: str, policy: InputPolicy) -> bytes:
    if not policy.input_root:
        raise JobError("path_outside_root", f"{location}: this worker has no input root (path inputs are off)")
    root = os.path.realpath(policy.input_root)
    path = location[len("file://"):] if location.startswith("file://") else location
    if "\x00" in path:
        raise JobError("path_outside_root", f"{location!r}: NUL byte in path")
    full = os.path.realpath(os.path.join(root, path))  # an absolute path replaces the root; realpath follows links
    if os.path.commonpath([full, root]) != root:
        raise JobError("path_outside_root", f"{location} resolves outside the input root")
    if not os.path.isfile(full):
        raise JobError("input_not_found", f"{location}: no such file under the input root")
    size = os.path.getsize(full)
    if size > policy.max_bytes:
        raise JobError("input_too_large", f"{location}: {size} bytes > limit {policy.max_bytes}")
    with open(full, "rb") as f:
        return f.read()


def fetch(location: str, policy: InputPolicy) -> bytes:
    scheme = urlparse(location).scheme.lower()
    if scheme == "s3":
        return _fetch_s3(location, policy)
    if scheme in ("http", "https"):
        return _fetch_http(location, policy)
    if scheme in ("", "file"):
        return _fetch_path(location, policy)
    raise JobError("scheme_not_allowed", f"{redact(location)[:80]}: scheme {scheme!r} (use s3://, http(s):// or a "
                                         "path)")


@dataclass
class FetchedInput:
    name: str
    kind: str
    data: bytes
    sha256: str
    ext: str


def fetch_input(name: str, kind: str, spec: dict, policy: InputPolicy) -> FetchedInput:
    data = fetch(spec["url"], policy)
    if not data:
        raise JobError("unsupported_media", f"input {name}: empty file")
    digest = hashlib.sha256(data).hexdigest()
    if spec.get("sha256") and spec["sha256"] != digest:
        raise JobError("checksum_mismatch", f"input {name}: sha256 {digest} != {spec['sha256']}")
    fmt = media_format(data)
    if kind in MEDIA_EXT:
        if fmt not in MEDIA_EXT[kind]:
            raise JobError("unsupported_media", f"input {name}: expected {kind} ({', '.join(MEDIA_EXT[kind])}), "
                                                f"got {fmt or 'unknown bytes'}")
        ext = MEDIA_EXT[kind][fmt]
    else:
        ext = os.path.splitext(urlparse(spec["url"]).path)[1][:8] or ".bin"
    return FetchedInput(name, kind, data, digest, ext)
