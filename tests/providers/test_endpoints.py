"""Which provider endpoints are refused when saved (issue 13, item 5: SSRF).

Every spelling of a cloud metadata or link-local target is refused with a reason; loopback and
private hosts pass unless PROVIDER_ENDPOINTS_ALLOW_PRIVATE is false. The connect-time half
(names that resolve there) is in test_endpoint_guard.py.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from shared.providers import endpoints
from shared.providers.endpoints import UnsafeEndpoint, check_endpoint_url

METADATA = "cloud metadata"
LINK_LOCAL = "link-local"

REFUSED_ALWAYS = [
    # (url, words the reason must contain)
    ("http://169.254.169.254/latest/meta-data/", METADATA),
    ("http://169.254.170.2/v2/credentials", LINK_LOCAL),  # ECS task credentials
    ("http://169.254.0.1:11434", LINK_LOCAL),
    ("http://[fe80::1]/", LINK_LOCAL),
    ("http://[FE80::a9fe:a9fe]:8080/", LINK_LOCAL),
    ("http://[fe80::1%25eth0]/", LINK_LOCAL),
    ("http://[fd00:ec2::254]/latest/meta-data/", METADATA),
    ("http://100.100.100.200/latest/meta-data/", METADATA),
    ("http://192.0.0.192/opc/v2/", METADATA),
    ("http://metadata.google.internal/computeMetadata/v1/", METADATA),
    ("http://metadata.google.internal./computeMetadata/v1/", METADATA),
    ("http://METADATA.GOOGLE.INTERNAL/", METADATA),
    ("http://metadata/computeMetadata/v1/", METADATA),
    ("http://metadata.goog/", METADATA),
    ("http://instance-data.ec2.internal/", METADATA),
    ("http://[::ffff:169.254.169.254]/", METADATA),
    ("http://[::ffff:a9fe:a9fe]/", METADATA),
    ("http://[0:0:0:0:0:ffff:a9fe:a9fe]/", METADATA),
    ("http://[64:ff9b::a9fe:a9fe]/", METADATA),  # NAT64
    ("http://[2002:a9fe:a9fe::]/", METADATA),  # 6to4
    ("http://0xa9fea9fe/", METADATA),
    ("http://0XA9FEA9FE/", METADATA),
    ("http://2852039166/", METADATA),
    ("http://0251.0376.0251.0376/", METADATA),
    ("http://0xa9.0xfe.0xa9.0xfe/", METADATA),
    ("http://169.254.43518/", METADATA),
    ("http://169.16689662/", METADATA),
    ("http://0251.254.169.254/", METADATA),
    ("http://169.254.169.254./", METADATA),
    ("http://169.254.169.254../", METADATA),
    ("http://ok@169.254.169.254/", METADATA),
    ("http://user:pass@169.254.169.254:80/", METADATA),
    ("http://api.example.com@169.254.169.254/", METADATA),
    ("HTTP://169.254.169.254/", METADATA),
    (
        "http://\uff11\uff16\uff19\u3002\uff12\uff15\uff14\u3002\uff11\uff16\uff19\u3002\uff12\uff15\uff14/",
        METADATA,
    ),
    ("http://0.0.0.0:11434/", "this network"),
    ("http://0/", "this network"),
    ("http://0.1.2.3/", "this network"),
    ("http://[::]/", "this network"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://255.255.255.255/", "reserved"),
    ("http://[::a9fe:a9fe]/", "reserved"),  # IPv4-compatible, deprecated
    # Not http(s), no host, or a host no two parsers read alike.
    ("ftp://api.example.com/", "http:// or https://"),
    ("file:///etc/passwd", "http:// or https://"),
    ("gopher://127.0.0.1:6379/_FLUSHALL", "http:// or https://"),
    ("api.example.com/v1", "http:// or https://"),
    ("http:///v1", "no host"),
    ("http://", "no host"),
    ("", "empty"),
    ("http://exa mple.com/", "whitespace"),
    ("http://169.254.169.254\t/", "whitespace"),
    ("http://127.0.0.1\n.example.com/", "whitespace"),
    ("http://ok\\@169.254.169.254/", "backslash"),
    ("http://[::ffff:a9fe:a9fe/", "cannot be parsed"),
    ("http://example.com:99999/", "cannot be parsed"),
    ("http://example.com:0x50/", "cannot be parsed"),
    ("http://%31%36%39.254.169.254/", "percent-encoding"),
    ("http://exa$mple.com/", "not a valid host name"),
]

ALLOWED = [
    # (url, normalised)
    ("https://api.openai.com/v1", "https://api.openai.com/v1"),
    ("https://api.anthropic.com", "https://api.anthropic.com"),
    ("HTTPS://API.OpenAI.com./v1/", "https://api.openai.com/v1/"),
    ("http://ollama:11434", "http://ollama:11434"),
    ("http://my_vllm.internal:8000/v1", "http://my_vllm.internal:8000/v1"),
    ("http://localhost:11434", "http://localhost:11434"),
    ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ("http://127.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ("http://[::1]:8000/v1", "http://[::1]:8000/v1"),
    ("http://10.0.0.5:11434", "http://10.0.0.5:11434"),
    ("http://172.16.3.4/v1", "http://172.16.3.4/v1"),
    ("http://192.168.1.20:1234/v1", "http://192.168.1.20:1234/v1"),
    ("http://100.64.0.7/v1", "http://100.64.0.7/v1"),
    ("http://[fd12:3456::1]:8000/", "http://[fd12:3456::1]:8000/"),
    ("http://[::ffff:10.0.0.5]/", "http://[::ffff:a00:5]/"),
    ("http://8.8.8.8/", "http://8.8.8.8/"),
    (
        "http://user:secret@gateway.example.com/v1?x=1#top",
        "http://user:secret@gateway.example.com/v1?x=1",
    ),
    ("https://xn--bcher-kva.example/v1", "https://xn--bcher-kva.example/v1"),
    ("https://bücher.example/v1", "https://xn--bcher-kva.example/v1"),
]

PRIVATE = [
    ("http://127.0.0.1:11434", "loopback"),
    ("http://127.8.9.10/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://localhost:11434", "loopback"),
    ("http://api.localhost/", "loopback"),
    ("http://10.1.2.3/", "private"),
    ("http://012.1.2.3/", "private"),  # octal 10.1.2.3
    ("http://172.16.0.1/", "private"),
    ("http://172.31.255.255/", "private"),
    ("http://192.168.0.1/", "private"),
    ("http://100.64.0.1/", "private"),
    ("http://[fc00::1]/", "private"),
    ("http://[fd12:3456::1]/", "private"),
]


@pytest.mark.parametrize("allow_private", [True, False])
@pytest.mark.parametrize(("url", "reason"), REFUSED_ALWAYS)
def test_metadata_link_local_and_malformed_endpoints_are_refused(
    url: str, reason: str, allow_private: bool
) -> None:
    with pytest.raises(UnsafeEndpoint) as info:
        check_endpoint_url(url, allow_private=allow_private)
    assert reason in info.value.reason
    assert isinstance(info.value, ValueError)
    # The reason names the rule, never the URL (its userinfo may be a password).
    assert "pass" not in str(info.value)


@pytest.mark.parametrize(("url", "normalised"), ALLOWED)
def test_public_and_private_endpoints_are_accepted_and_normalised(
    url: str, normalised: str
) -> None:
    assert check_endpoint_url(url, allow_private=True) == normalised


@pytest.mark.parametrize(("url", "reason"), PRIVATE)
def test_private_endpoints_are_refused_when_private_is_not_allowed(url: str, reason: str) -> None:
    assert check_endpoint_url(url, allow_private=True)
    with pytest.raises(UnsafeEndpoint) as info:
        check_endpoint_url(url, allow_private=False)
    assert reason in info.value.reason
    assert "PROVIDER_ENDPOINTS_ALLOW_PRIVATE is false" in info.value.reason


def test_public_endpoints_pass_when_private_is_not_allowed() -> None:
    assert check_endpoint_url("https://api.openai.com/v1", allow_private=False)
    assert check_endpoint_url("http://8.8.8.8/", allow_private=False) == "http://8.8.8.8/"


# -- save-time resolution (resolve_names=True) ---------------------------------------------


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[str]]]:
    """Answers for made-up names, in place of the system resolver the guard calls."""
    answers: dict[str, list[str]] = {}

    def resolve(host: str, port: int) -> list[tuple[object, object, int, str, tuple[object, ...]]]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (ip, port, 0, 0) if ":" in ip else (ip, port),
            )
            for ip in answers[host]
        ]

    monkeypatch.setattr(endpoints, "resolve", resolve)
    yield answers


@pytest.mark.parametrize(
    ("addresses", "reason"),
    [
        (["169.254.169.254"], METADATA),
        (["fe80::1%eth0"], LINK_LOCAL),
        (["::ffff:169.254.169.254"], METADATA),
        (["0.0.0.0"], "this network"),
        # One bad address is enough: the client might pick it.
        (["93.184.215.14", "169.254.169.254"], METADATA),
    ],
)
def test_names_resolving_to_refused_addresses_are_refused_on_save(
    fake_dns: dict[str, list[str]], addresses: list[str], reason: str
) -> None:
    fake_dns["models.attacker.example"] = addresses
    url = "https://models.attacker.example/v1"
    assert check_endpoint_url(url, allow_private=True) == url  # not resolved by default
    with pytest.raises(UnsafeEndpoint) as info:
        check_endpoint_url(url, allow_private=True, resolve_names=True)
    assert info.value.reason.startswith("the host resolves to ")
    assert reason in info.value.reason


def test_resolution_on_save_follows_the_private_setting(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["vllm.lan"] = ["10.0.0.7"]
    url = "http://vllm.lan:8000/v1"
    assert check_endpoint_url(url, allow_private=True, resolve_names=True) == url
    with pytest.raises(UnsafeEndpoint, match="private address"):
        check_endpoint_url(url, allow_private=False, resolve_names=True)


def test_a_name_that_does_not_resolve_yet_is_accepted_on_save(
    fake_dns: dict[str, list[str]],
) -> None:
    # The connection guard checks it when the worker connects.
    url = "https://not-yet-in-dns.example/v1"
    assert check_endpoint_url(url, allow_private=False, resolve_names=True) == url


# -- endpoints from the environment ----------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "setting", "reason"),
    [
        ({"OLLAMA_API_URL": "http://169.254.169.254"}, "OLLAMA_API_URL", METADATA),
        ({"OPENAI_API_BASE": "http://0xa9fea9fe/v1"}, "OPENAI_API_BASE", METADATA),
        ({"ANTHROPIC_BASE_URL": "http://metadata.google.internal"}, "ANTHROPIC_BASE_URL", METADATA),
        (
            {
                "OPENAI_COMPATIBLE_PROVIDERS": '[{"name": "vllm", "models": ["m"], '
                '"base_url": "http://user:hunter2@[fe80::1]/v1"}]'
            },
            "OPENAI_COMPATIBLE_PROVIDERS (vllm) base_url",
            LINK_LOCAL,
        ),
        (
            {
                "OLLAMA_API_URL": "http://10.0.0.5:11434",
                "PROVIDER_ENDPOINTS_ALLOW_PRIVATE": "false",
            },
            "OLLAMA_API_URL",
            "private address",
        ),
    ],
)
def test_unsafe_endpoint_in_the_environment_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], setting: str, reason: str
) -> None:
    from shared.settings import InvalidSettings, get_settings

    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(InvalidSettings) as info:
            get_settings()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    message = str(info.value)
    assert message.startswith(f"{setting}: endpoint refused: the host is ")
    assert reason in message
    assert "hunter2" not in message


def test_safe_endpoints_in_the_environment_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.providers.catalog import configured_providers
    from shared.settings import Settings

    settings = Settings(
        OLLAMA_API_URL="http://127.0.0.1:11434", OPENAI_API_BASE="https://api.openai.com/v1"
    )
    configs = configured_providers(settings)
    # The configured value is kept as written; only the check is applied.
    assert configs["ollama"].api_endpoint == "http://127.0.0.1:11434"
