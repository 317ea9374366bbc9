"""Endpoint safety (SSRF): which hosts a provider endpoint may name, and may connect to.

A provider endpoint is a URL the worker POSTs prompts (and the key) to; set by an admin, it must
never reach a cloud metadata service or a link-local address, however the address is spelled.
Two checks share one classification:

- `check_endpoint_url` when a URL is saved or read from the settings: scheme, host, and the host
  itself when it is an address (in any spelling libc's `inet_aton` accepts, since that is what
  resolvers and HTTP clients accept) or a metadata name;
- the connection guard in `_http.py` (`GuardedTransport` for httpx2, `GuardedHTTPAdapter` for
  requests) when a connection is opened: the host is resolved once, every address is checked,
  and the socket connects to one of those checked addresses. The check and the connection use
  the same resolution, so a name that re-resolves to 169.254.169.254 (DNS rebinding) after the
  URL was saved is still refused. TLS SNI and the Host header keep the original name.

Loopback and private ranges are allowed unless `allow_private` is false
(`PROVIDER_ENDPOINTS_ALLOW_PRIVATE`): a self-hosted Ollama or vLLM usually lives there.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from shared.providers.errors import ProviderBadRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressInfo = tuple[Any, Any, int, str, tuple[Any, ...]]


class UnsafeEndpoint(ValueError):
    """An endpoint refused by the SSRF policy. `reason` names the rule, never the URL (its
    userinfo may hold a password)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _system_resolve(host: str, port: int) -> Sequence[AddressInfo]:
    # Looked up at call time, not bound at import, so gevent's patched resolver is the one used.
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


# The resolver the connection guard uses. Module-level so tests can stand in a fake DNS answer
# (a rebinding name) without a network or /etc/hosts.
resolve: Callable[[str, int], Sequence[AddressInfo]] = _system_resolve

METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, DigitalOcean
        ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6 (inside fc00::/7)
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud (inside 100.64.0.0/10)
        ipaddress.ip_address("192.0.0.192"),  # Oracle Cloud
    }
)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

# Refused whatever PROVIDER_ENDPOINTS_ALLOW_PRIVATE says.
_ALWAYS_REFUSED = {
    "metadata": "a cloud metadata address",
    "link_local": "a link-local address (169.254.0.0/16, fe80::/10: cloud metadata lives there)",
    "this_network": "a 'this network' address (0.0.0.0/8, ::), which reaches the local host",
    "multicast": "a multicast address",
    "reserved": "a reserved or broadcast address",
}
_PRIVATE = {
    "loopback": "a loopback address (127.0.0.0/8, ::1)",
    "private": "a private address (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7 and similar)",
}
_SETTING_HINT = "; PROVIDER_ENDPOINTS_ALLOW_PRIVATE is false"
_HOST_NAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")


def classify_address(address: IPAddress) -> str | None:
    """The category of an address (a key of the tables above), or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in METADATA_ADDRESSES:
            return "metadata"
        # An IPv4 address carried inside IPv6 is judged as that IPv4 address: ::ffff:a9fe:a9fe
        # is 169.254.169.254 to the kernel, and NAT64 / 6to4 forward to the embedded one.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return classify_address(embedded)
        if address.is_unspecified:
            return "this_network"
        if address.is_loopback:
            return "loopback"
        if address.is_link_local:
            return "link_local"
        if address.is_multicast:
            return "multicast"
        if address in _UNIQUE_LOCAL or address.is_site_local:
            return "private"
        if address.is_reserved:  # ::/8 (IPv4-compatible forms included) and friends
            return "reserved"
        return None if address.is_global else "private"
    if address in METADATA_ADDRESSES:
        return "metadata"
    if address in _THIS_NETWORK:
        return "this_network"
    if address.is_link_local:
        return "link_local"
    if address.is_multicast:
        return "multicast"
    if address.is_reserved:  # 240.0.0.0/4, 255.255.255.255 included
        return "reserved"
    if address.is_loopback:
        return "loopback"
    return None if address.is_global else "private"


def address_problem(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why connecting to this address is refused (a noun phrase), or None when it is allowed."""
    category = classify_address(address)
    if category is None:
        return None
    if category in _ALWAYS_REFUSED:
        return _ALWAYS_REFUSED[category]
    return None if allow_private else _PRIVATE[category] + _SETTING_HINT


def parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a host spells in any form inet_aton accepts (0xa9fea9fe, 2852039166,
    0251.0376.0251.0376, 169.254.43518), or None when the host is a name."""
    if not host or not host[0].isdigit() or not host.isascii() or not host.isprintable():
        return None
    if any(char.isspace() for char in host):
        return None  # glibc's inet_aton ignores anything after a space
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _host_address(host: str) -> IPAddress | None:
    """The address a host literally is (IPv6 without brackets, IPv4 in any spelling)."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise UnsafeEndpoint("the host is not a valid IPv6 address") from None
    return parse_ipv4(host)


def check_host(host: str, *, allow_private: bool) -> IPAddress | None:
    """Refuse a host (already lowercased, without brackets) that is a refused address or a
    metadata name; the address it literally is, or None for a name to resolve."""
    host = host.rstrip(".")
    if not host:
        raise UnsafeEndpoint("the URL has no host")
    if "%" in host:
        # A zone id only means something for link-local addresses; name those when it is one.
        address, _, _ = host.partition("%")
        if ":" in address:
            check_host(address, allow_private=allow_private)
        raise UnsafeEndpoint("the host has an IPv6 zone id or percent-encoding")
    address = _host_address(host)
    if address is not None:
        problem = address_problem(address, allow_private=allow_private)
        if problem:
            raise UnsafeEndpoint(f"the host is {problem}")
        return address
    if not _HOST_NAME.match(host):
        raise UnsafeEndpoint("the host is not a valid host name")
    if host in METADATA_NAMES:
        raise UnsafeEndpoint("the host is a cloud metadata host name")
    if not allow_private and (host == "localhost" or host.endswith(".localhost")):
        raise UnsafeEndpoint(f"the host is a loopback name{_SETTING_HINT}")
    return None


def _ascii_host(host: str) -> str:
    if host.isascii():
        return host.lower()
    # Full-width digits and dots (U+FF10, U+3002) fold to ASCII under IDNA, as HTTP clients
    # encode them: check the ASCII form the client would connect to.
    try:
        return unicodedata.normalize("NFKC", host).encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise UnsafeEndpoint("the host is not a valid host name") from None


def check_endpoint_url(url: str, *, allow_private: bool, resolve_names: bool = False) -> str:
    """The URL, normalised (scheme and host lowercased, trailing dots and fragment dropped), or
    `UnsafeEndpoint` with the reason. With `resolve_names` a host name is also resolved now and
    each address checked; a name that does not resolve yet is accepted (the connection guard
    checks again on every connect either way)."""
    if not isinstance(url, str) or not url.strip():
        raise UnsafeEndpoint("the URL is empty")
    if any(char.isspace() or not char.isprintable() for char in url):
        raise UnsafeEndpoint("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeEndpoint("the URL cannot be parsed (check the host and port)") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeEndpoint("the URL must start with http:// or https://")
    if "\\" in parts.netloc:
        # Parsers disagree on a backslash (WHATWG reads it as "/"): refuse rather than guess.
        raise UnsafeEndpoint("the URL's host part contains a backslash")
    userinfo, _, _ = parts.netloc.rpartition("@")
    host = _ascii_host(parts.hostname or "")
    address = check_host(host, allow_private=allow_private)
    host = host.rstrip(".")
    if address is None and resolve_names:
        # A name not in DNS (yet) passes: the connection guard decides when the worker connects.
        with contextlib.suppress(OSError):
            check_resolved(host, port or (443 if parts.scheme == "https" else 80), allow_private)
    if address is not None:
        # Spelled the one way every parser agrees on: 0xa9fea9fe -> 169.254.169.254.
        host = f"[{address}]" if address.version == 6 else str(address)
    netloc = (f"{userinfo}@" if userinfo else "") + host + (f":{port}" if port else "")
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}"


def check_resolved(host: str, port: int, allow_private: bool) -> list[str]:
    """The addresses `host` resolves to, each checked, in resolver order (duplicates dropped).
    Raises `UnsafeEndpoint` if any is refused (a name that also points at metadata is not
    trusted for its other addresses), `socket.gaierror` when the name does not resolve."""
    literal = check_host(host.lower(), allow_private=allow_private)
    if literal is not None:
        return [str(literal)]
    addresses: list[str] = []
    for info in resolve(host, port):
        # getaddrinfo gives "fe80::1%eth0" for scoped addresses; ip_address keeps the scope.
        address = ipaddress.ip_address(str(info[4][0]))
        problem = address_problem(address, allow_private=allow_private)
        if problem:
            raise UnsafeEndpoint(f"the host resolves to {problem}")
        if str(address) not in addresses:
            addresses.append(str(address))
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, "the host resolves to no address")
    return addresses


def private_endpoints_allowed() -> bool:
    from shared.settings import get_settings

    return get_settings().PROVIDER_ENDPOINTS_ALLOW_PRIVATE


def refusal_in(exc: BaseException | None) -> UnsafeEndpoint | None:
    """The `UnsafeEndpoint` an SDK error was raised from (the SDKs wrap what the transport
    raises), or None."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, UnsafeEndpoint):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def endpoint_refused(refusal: UnsafeEndpoint, provider: str) -> ProviderBadRequest:
    """The provider error for a refused connection: not retryable, the endpoint must change."""
    return ProviderBadRequest(f"endpoint refused: {refusal.reason}", provider=provider)
