"""Requests a browser may have been made to send: refused before any route runs.

A page on another origin can make its visitor's browser send requests to
this server: forms and ``fetch(..., {mode: "no-cors"})`` POST with a form or
text body, or none, and ``<img>`` GETs. It cannot read the answers, but
without tokens (nothing the browser would have to add) the requests act.

- **No GET changes state** (``/next-job``, which leases, is a POST).
- **State-changing requests** (POST, PUT, PATCH, DELETE) carry a JSON body
  or none: another content type is refused 415. And a browser's request from
  another origin is refused 403: ``Sec-Fetch-Site`` must say ``same-origin``
  (or ``none``, typed by the user); without it, an ``Origin`` must be this
  server's own. Clients that are not browsers send neither, and pass.
- **DNS rebinding**: a page on ``evil.example`` whose name then resolves to
  this server's address is same-origin for the browser; its requests say
  ``Host: evil.example``. Without tokens, a ``Host`` that is not one of the
  server's own names is refused 421. IP addresses are always accepted: a
  rebinding attack needs a name the attacker controls. With tokens this check
  is off (the browser sends no token to a rebound name), so that a server
  behind a proxy answers to whatever name the proxy passes.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import falcon

from taskframe.core.errors import ErrorCode
from taskframe.server.http.errors import APIError
from taskframe.server.http.throttle import RefusalLog

log = logging.getLogger("taskframe.server.http.auth")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON = "application/json"
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: ``Sec-Fetch-Site`` values of requests a page of this server (or the user) made.
_OWN_SITE = frozenset({"same-origin", "none"})


def split_host(value: str) -> tuple[str, int | None]:
    """``Host`` header -> (lower-case name or address without brackets or a final dot, port)."""
    value = value.strip()
    host, port = value, None
    if value.startswith("["):  # [v6]:port
        end = value.find("]")
        host, rest = value[1:end] if end > 0 else value, value[end + 1 :] if end > 0 else ""
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif value.count(":") == 1:
        name, _, digits = value.partition(":")
        host, port = name, int(digits) if digits.isdigit() else None
    return host.rstrip(".").lower(), port


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class AllowedHosts:
    """The names a tokenless server answers to: its own, loopback names, and the operator's."""

    names: frozenset[str]
    suffixes: tuple[str, ...] = ()
    anything: bool = False

    @classmethod
    def build(cls, listen_host: str, extra: Iterable[str] = ()) -> AllowedHosts:
        """``--host`` and ``--allowed-host`` entries (``*.example.com`` for subdomains, ``*``)."""
        names = {"localhost", split_host(listen_host)[0]}
        suffixes: list[str] = []
        anything = False
        for entry in extra:
            name = entry.strip().rstrip(".").lower()
            if name == "*":
                anything = True
            elif name.startswith("*."):
                suffixes.append(name[1:])
            elif name:
                names.add(split_host(name)[0])
        return cls(frozenset(names), tuple(suffixes), anything)

    def allows(self, host: str) -> bool:
        if self.anything or host in self.names or is_address(host):
            return True
        # RFC 6761: *.localhost names resolve to loopback, in browsers too.
        return host.endswith(".localhost") or host.endswith(self.suffixes)


def parse_allowed_hosts(text: str | None) -> list[str]:
    """``--allowed-host``: names separated by commas or spaces."""
    return [entry for entry in (text or "").replace(",", " ").split() if entry]


def cross_site(req: falcon.Request) -> str | None:
    """Why ``req`` looks sent by a page of another origin, or None."""
    env = req.env  # (the WSGI environment: cheaper than get_header on every request)
    site = env.get("HTTP_SEC_FETCH_SITE")
    if site is not None:
        site = site.strip().lower()
        return None if site in _OWN_SITE else f"Sec-Fetch-Site: {site}"
    origin = env.get("HTTP_ORIGIN")
    if origin is None:
        return None  # not a browser (browsers send Origin with every POST, PUT, DELETE)
    if not _same_origin(origin, env.get("HTTP_HOST") or ""):
        return f"Origin: {origin[:100]}"
    return None


def _same_origin(origin: str, host_header: str) -> bool:
    try:
        parts = urlsplit(origin.strip())
        origin_port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return False
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        return False  # "null" (a sandboxed frame, a file) and the like
    host, port = split_host(host_header)
    # No port in Host: the default one of the scheme the browser used (behind a
    # TLS proxy the server itself may see plain http).
    return parts.hostname.rstrip(".").lower() == host and (port or origin_port) == origin_port


class OriginGuard:
    """Falcon middleware for the checks above; ``hosts`` None leaves ``Host`` unchecked."""

    def __init__(self, hosts: AllowedHosts | None, refusals: RefusalLog | None = None) -> None:
        self.hosts = hosts
        self.refusals = refusals or RefusalLog(log)
        self._verdicts: dict[str, bool] = {}  # Host header -> allowed (a few values in practice)

    def _allowed(self, header: str) -> bool:
        verdict = self._verdicts.get(header)
        if verdict is None:
            verdict = self.hosts is None or self.hosts.allows(split_host(header)[0])
            if len(self._verdicts) < 256:
                self._verdicts[header] = verdict
        return verdict

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        env = req.env
        if self.hosts is not None:
            header = env.get("HTTP_HOST")
            if header and not self._allowed(header):
                host = split_host(header)[0]
                self.refusals.refused(req, "foreign Host", f" ({host[:100]!r})")
                raise APIError(
                    falcon.HTTP_421,
                    "Unknown host",
                    f"this server does not answer to the name {host[:100]!r} (without tokens it "
                    "answers to its own --host, localhost and IP addresses; add names with "
                    "--allowed-host)",
                    code=ErrorCode.UNKNOWN_HOST,
                )
        if env["REQUEST_METHOD"] in SAFE_METHODS:
            return
        reason = cross_site(req)
        if reason is not None:
            self.refusals.refused(req, "cross-site", f" ({reason})")
            raise APIError(
                falcon.HTTP_403,
                "Cross-site request refused",
                f"{req.method} {req.path} was sent by a page of another site ({reason}); "
                "requests that change state are accepted from this server's own pages "
                "and from clients that are not browsers",
                code=ErrorCode.CROSS_SITE,
            )
        media = env.get("CONTENT_TYPE") or ""
        if media == JSON:
            return
        media = media.split(";", 1)[0].strip().lower()
        if media != JSON and (media or env.get("CONTENT_LENGTH", "0") not in ("", "0")):
            raise APIError(
                falcon.HTTP_415,
                "Unsupported media type",
                f"send a JSON body with Content-Type: {JSON}, or no body "
                f"(got {media or 'a body without a Content-Type'})",
                code=ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            )


def guard_options(group: Any) -> None:
    """``--allowed-host``, for the server's security group."""
    from taskframe.core.options import add_option

    add_option(
        group,
        "--allowed-host",
        help="without tokens, the Host names the server answers to besides its --host, "
        "localhost and IP addresses (comma-separated; *.example.com for subdomains, * for "
        "any): other names are refused 421, against DNS rebinding",
    )
