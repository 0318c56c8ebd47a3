"""The ``http`` executor stays in its lane: --http-allow/--http-deny, redirects, the
environment ignored, capped headers. Real local HTTP servers, no mocks."""

from __future__ import annotations

import argparse
import ipaddress
import json
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest

from taskframe.core import ExecutorContext, PermanentError
from taskframe.plugins import http
from taskframe.plugins.http_guard import DEFAULT_DENY, TargetDenied, as_ipv4, parse_rules
from tests.recorder import HEADER_COUNT, Recorder, recording_servers


@pytest.fixture
def serve() -> Iterator[Callable[..., Recorder]]:
    """Factory: serve(host) -> a Recorder listening on ``host`` and a free port."""
    with recording_servers() as start:
        yield start


@pytest.fixture
def target(serve: Callable[..., Recorder]) -> Recorder:
    return serve()


def _run(payload: dict, **options: object) -> dict:
    """Run the executor as a worker started with ``--http-deny`` etc. would."""
    parsed = {
        name: parse_rules(value) if name in ("http_allow", "http_deny") else value
        for name, value in options.items()
    }
    loaded = http.HttpPayloadSchema().load(payload)
    deadline = time.monotonic() + 30
    context = ExecutorContext(1, 1, deadline, options=argparse.Namespace(**parsed))
    return http.run(loaded, context)


def _port(recorder: Recorder) -> int:
    return urlsplit(recorder.url).port or 80


# -- the environment --------------------------------------------------------------------


def test_netrc_and_proxy_variables_are_ignored(
    target: Recorder, serve: Callable[..., Recorder], tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A .netrc entry matching the target sends no password; a proxy variable is unused."""
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login worker password s3cret\n")
    netrc.chmod(0o600)
    proxy = serve()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(netrc))
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy.url)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    result = _run({"url": f"{target.url}/ok"})
    assert result["status_code"] == 200
    assert [request["path"] for request in target.requests] == ["/ok"]
    assert "Authorization" not in target.requests[0]["headers"]
    assert proxy.requests == []


def test_http_proxy_flag_sends_requests_through_the_proxy(serve: Callable[..., Recorder]) -> None:
    proxy = serve()
    result = _run({"url": "http://service.invalid/path"}, http_proxy=proxy.url)
    assert result["status_code"] == 200
    assert [request["path"] for request in proxy.requests] == ["http://service.invalid/path"]


def test_a_denied_target_is_refused_even_through_the_proxy(
    serve: Callable[..., Recorder],
) -> None:
    proxy = serve()
    with pytest.raises(TargetDenied, match="127.0.0.0/8"):
        _run({"url": "http://localhost:1/"}, http_proxy=proxy.url, http_deny="127.0.0.0/8,::1")
    assert proxy.requests == []


# -- allow and deny ------------------------------------------------------------------


def test_a_name_resolving_to_a_denied_address_is_refused_before_connecting(
    target: Recorder,
) -> None:
    url = f"http://localhost:{_port(target)}/ok"
    with pytest.raises(TargetDenied, match=r"'localhost' resolves to .*denied") as excinfo:
        _run({"url": url}, http_deny="127.0.0.0/8,::1")
    assert isinstance(excinfo.value, PermanentError)
    assert target.requests == []
    assert _run({"url": url})["status_code"] == 200  # allowed by default


OBFUSCATED = ["2130706433", "0x7f.0.0.1", "0177.0.0.1", "127.1", "0x7f000001"]


@pytest.mark.parametrize("host", OBFUSCATED)
def test_obfuscated_addresses_are_judged_by_what_they_resolve_to(
    target: Recorder, host: str
) -> None:
    url = f"http://{host}:{_port(target)}/ok"
    assert _run({"url": url})["status_code"] == 200  # it does reach the loopback server
    with pytest.raises(TargetDenied, match="127.0.0.1, denied"):
        _run({"url": url}, http_deny="127.0.0.0/8")
    assert len(target.requests) == 1


def test_ipv4_mapped_ipv6_addresses_are_judged_as_ipv4(target: Recorder) -> None:
    with pytest.raises(TargetDenied, match="127.0.0.0/8"):
        _run({"url": f"http://[::ffff:127.0.0.1]:{_port(target)}/ok"}, http_deny="127.0.0.0/8")
    assert target.requests == []


@pytest.mark.parametrize(
    ("address", "ipv4"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1"),  # mapped
        ("::127.0.0.1", "127.0.0.1"),  # compatible
        ("::a9fe:a9fe", "169.254.169.254"),
        ("64:ff9b::7f00:1", "127.0.0.1"),  # NAT64
        ("64:ff9b::169.254.169.254", "169.254.169.254"),
        ("::1", "::1"),  # IPv6's own loopback, not 0.0.0.1
        ("::", "::"),
        ("2001:db8::7f00:1", "2001:db8::7f00:1"),
        ("10.0.0.1", "10.0.0.1"),
    ],
)
def test_ipv6_forms_of_an_ipv4_address_are_normalised(address: str, ipv4: str) -> None:
    assert as_ipv4(ipaddress.ip_address(address)) == ipaddress.ip_address(ipv4)


@pytest.mark.parametrize(
    "host", ["[64:ff9b::a9fe:a9fe]", "[::169.254.169.254]", "[::ffff:169.254.169.254]"]
)
def test_metadata_addresses_in_ipv6_forms_are_denied_by_default(host: str) -> None:
    with pytest.raises(TargetDenied, match=r"169\.254\.0\.0/16"):
        _run({"url": f"http://{host}/latest/meta-data/", "timeout": 2})


def test_nat64_and_compatible_forms_of_loopback_are_denied_by_strict() -> None:
    for host in ("[64:ff9b::7f00:1]", "[::127.0.0.1]"):
        with pytest.raises(TargetDenied, match=r"127\.0\.0\.0/8"):
            _run({"url": f"http://{host}:8000/", "timeout": 2}, http_deny="@strict")


# -- the worker's own server -------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.0.0.2", "[::1]", "0.0.0.0"])
def test_the_workers_own_server_is_refused_by_default(
    serve: Callable[..., Recorder], host: str
) -> None:
    server = serve()  # stands for taskframe-server
    port = _port(server)
    with pytest.raises(TargetDenied, match=f"the worker's own server \\(127.0.0.1:{port}"):
        _run(
            {"url": f"http://{host}:{port}/queues/default/pause", "method": "POST"},
            api_url=f"http://127.0.0.1:{port}",
        )
    assert server.requests == []


def test_other_ports_of_the_servers_host_and_allowed_servers_are_reached(
    serve: Callable[..., Recorder],
) -> None:
    server, other = serve(), serve()
    api = f"http://localhost:{_port(server)},http://127.0.0.1:{_port(server) + 1}"
    assert _run({"url": f"{other.url}/ok"}, api_url=api)["status_code"] == 200
    allowed = _run({"url": f"{server.url}/ok"}, api_url=api, http_allow="127.0.0.1")
    assert allowed["status_code"] == 200 and len(server.requests) == 1


def test_a_redirect_to_the_workers_own_server_is_not_followed(
    serve: Callable[..., Recorder],
) -> None:
    server, front = serve(), serve()
    to = f"http://localhost:{_port(server)}/queues/default/pause"
    with pytest.raises(TargetDenied, match="own server"):
        _run({"url": f"{front.url}/redirect?status=307&to={to}"}, api_url=server.url)
    assert server.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[fd00:ec2::254]/",
        "https://169.254.170.2/",
    ],
)
def test_link_local_and_metadata_addresses_are_denied_by_default(url: str) -> None:
    with pytest.raises(TargetDenied, match="denied by the worker's --http-deny"):
        _run({"url": url, "timeout": 2})


def test_host_name_rules(target: Recorder) -> None:
    url = f"http://localhost:{_port(target)}/ok"
    with pytest.raises(TargetDenied, match="host 'localhost' is denied"):
        _run({"url": url}, http_deny="localhost")
    with pytest.raises(TargetDenied, match=r"\*\.localhost"):
        _run({"url": f"http://api.localhost:{_port(target)}/"}, http_deny="*.localhost")
    assert target.requests == []


def test_allow_makes_exceptions_to_deny(target: Recorder) -> None:
    url = f"{target.url}/ok"
    assert _run({"url": url}, http_deny="@strict", http_allow="127.0.0.1")["status_code"] == 200
    named = f"http://localhost:{_port(target)}/ok"
    result = _run({"url": named}, http_deny="127.0.0.0/8,::1", http_allow="localhost")
    assert result["status_code"] == 200
    with pytest.raises(TargetDenied):
        _run({"url": url}, http_deny="0.0.0.0/0,::/0", http_allow="10.0.0.0/8")


# -- redirects ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_into_a_denied_network_is_not_followed(
    serve: Callable[..., Recorder], status: int
) -> None:
    """The next hop is checked before anything is sent to it, a 307 POST included."""
    front, inner = serve("127.0.0.1"), serve("127.0.0.2")
    to = f"{inner.url}/jobs/1/cancel"
    payload = {"url": f"{front.url}/redirect?status={status}&to={to}", "method": "POST"}
    payload["json"] = {"reason": "ssrf"}
    with pytest.raises(TargetDenied, match=r"127\.0\.0\.2, denied .*127\.0\.0\.2/32"):
        _run(payload, http_deny=f"{DEFAULT_DENY},127.0.0.2/32")
    assert [request["method"] for request in front.requests] == ["POST"]
    assert inner.requests == []
    assert _run(payload)["status_code"] == 200  # followed when allowed
    assert len(inner.requests) == 1


def test_redirects_keep_or_drop_the_method_body_and_credentials(target: Recorder) -> None:
    def hop(status: int, to: str) -> dict:
        payload = {
            "url": f"{target.url}/redirect?status={status}&to={to}",
            "method": "POST",
            "body": "data",
            "headers": {"Authorization": "Bearer t", "Content-Type": "text/plain"},
        }
        return json.loads(_run(payload)["body"])

    kept = hop(307, "/echo")
    assert (kept["method"], kept["body"], kept["headers"]["Authorization"]) == (
        "POST",
        "data",
        "Bearer t",
    )
    changed = hop(302, "/echo")
    assert (changed["method"], changed["body"]) == ("GET", "")
    assert "Content-Type" not in changed["headers"]
    elsewhere = hop(308, f"http://localhost:{_port(target)}/echo")  # another host name
    assert elsewhere["method"] == "POST" and "Authorization" not in elsewhere["headers"]


def test_the_body_of_a_redirect_is_not_read(target: Recorder) -> None:
    result = _run({"url": f"{target.url}/hanging-redirect", "timeout": 5})
    assert result["status_code"] == 200


def test_a_redirect_loop_is_permanent(target: Recorder) -> None:
    with pytest.raises(PermanentError, match="redirects"):
        _run({"url": f"{target.url}/loop"})
    assert len(target.requests) == http.MAX_REDIRECTS + 1


def test_a_redirect_to_another_scheme_is_permanent(target: Recorder) -> None:
    with pytest.raises(PermanentError, match="non-http"):
        _run({"url": f"{target.url}/redirect?to=file:///etc/passwd"})


# -- what is stored -------------------------------------------------------------------


def test_response_headers_are_capped(target: Recorder) -> None:
    result = _run({"url": f"{target.url}/many-headers"})
    assert result["headers_truncated"] is True
    stored = sum(len(name) + len(value) + 4 for name, value in result["headers"].items())
    assert 0 < stored <= http.MAX_HEADERS
    assert len(result["headers"]) < HEADER_COUNT
    assert _run({"url": f"{target.url}/ok"})["headers_truncated"] is False


@pytest.mark.parametrize("charset", ["base64", "rot13", "idna", "no-such-charset", "utf-16"])
def test_an_odd_charset_is_decoded_and_never_retried(target: Recorder, charset: str) -> None:
    result = _run({"url": f"{target.url}/charset?cs={charset}"})
    assert result["body"] == "héllo ✓"


# -- options ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    http.taskframe_add_options(parser=parser, role="worker")
    return parser


def test_worker_options_and_their_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = _parser().parse_args([])
    assert defaults.http_deny == parse_rules(DEFAULT_DENY)
    assert defaults.http_allow is None and defaults.http_proxy is None
    options = _parser().parse_args(["--http-deny", "@strict,*.corp.example", "--http-allow", ""])
    assert "10.0.0.0/8" in {str(net) for net in options.http_deny.networks}
    assert options.http_deny.suffixes == (".corp.example",)
    monkeypatch.setenv("TASKFRAME_HTTP_DENY", "192.0.2.0/24 metadata.internal")
    monkeypatch.setenv("TASKFRAME_HTTP_PROXY", "http://proxy.example:3128")
    from_env = _parser().parse_args([])
    assert [str(net) for net in from_env.http_deny.networks] == ["192.0.2.0/24"]
    assert from_env.http_deny.names == {"metadata.internal"}
    assert from_env.http_proxy == "http://proxy.example:3128"
    server = argparse.ArgumentParser()
    http.taskframe_add_options(parser=server, role="server")
    assert server.parse_args([]) == argparse.Namespace()


@pytest.mark.parametrize(
    "argv",
    [
        ["--http-deny", "@nope"],
        ["--http-deny", "10.0.0.0/33"],
        ["--http-allow", "bad..name"],
        ["--http-proxy", "socks5://p:1080"],
    ],
)
def test_bad_option_values_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(argv)


# -- https ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ssl.SSLContext]:
    """A self-signed certificate for localhost and 127.0.0.1, and a server context."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-nodes", "-days", "1"]
        + ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]  # fast, unlike RSA
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return str(cert), context


def test_https_through_the_guarded_connection(
    serve: Callable[..., Recorder],
    certificate: tuple[str, ssl.SSLContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--http-ca-cert is trusted, REQUESTS_CA_BUNDLE is not, the rules still apply."""
    cert, context = certificate
    server = serve(tls=context)
    url = f"https://localhost:{_port(server)}/ok"
    assert _run({"url": url}, http_ca_cert=cert)["status_code"] == 200
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
    with pytest.raises(ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        _run({"url": url, "timeout": 5})
    with pytest.raises(TargetDenied, match="127.0.0.0/8"):
        _run({"url": url}, http_ca_cert=cert, http_deny="127.0.0.0/8,::1")
    assert len(server.requests) == 1
