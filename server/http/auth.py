"""Bearer tokens with roles: parsing the token list, and the Falcon middleware.

A token line is ``ROLES:TOKEN``, ROLES being a comma-separated list of
``client``, ``worker`` and ``admin``. The worker role may be bound to worker
ids: ``worker[w1,w2]`` (exactly those ids) or ``worker[gpu-*]`` (ids that
start with ``gpu-``); a bound token may lease, heartbeat, complete and release
only under those ids. Examples::

    client:Q3J0...            # submit, read, list, cancel, retry
    worker[w1,w2]:mF9x...     # a worker that must call itself w1 or w2
    client,worker:Zt8u...     # both
    admin:8sLk...             # everything

Tokens are kept only as SHA-256 digests; a request's token is hashed and
looked up, the final comparison being ``hmac.compare_digest``. No token is
ever logged or put in an answer.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import falcon

from taskframe.core.errors import ErrorCode
from taskframe.server.http.errors import APIError
from taskframe.server.http.throttle import AuthThrottle, RefusalLog

log = logging.getLogger("taskframe.server.http.auth")

CLIENT = "client"
WORKER = "worker"
ADMIN = "admin"
ROLES = (CLIENT, WORKER, ADMIN)

OPEN: frozenset[str] = frozenset()
"""Roles of a route anyone may call, token or not (``GET /health``, the dashboard page)."""

MIN_TOKEN_LENGTH = 16
# RFC 6750's b64token: what can travel in a Bearer header without quoting.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_ROLE = re.compile(r"\s*([a-z]+)\s*(?:\[([^\]]*)\])?\s*")
_WORKER_ID = re.compile(r"[^\s,\[\]:*]+\*?")
# What an anonymous caller sees of GET /health when tokens are configured.
HEALTH_PUBLIC_FIELDS = ("status",)


class TokenError(ValueError):
    """A token line that cannot be used; the message names where it is, never the token."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the roles of their token and, for a bound worker, its ids."""

    roles: frozenset[str]
    worker_ids: tuple[str, ...] | None = None
    """None: any worker id. Otherwise exact ids, or prefixes ending in ``*``."""
    name: str = ""
    """Where the token was defined (``token file line 3``), for logs."""
    digest: bytes = field(default=b"", repr=False)

    def may(self, roles: frozenset[str]) -> bool:
        return ADMIN in self.roles or bool(self.roles & roles)

    def may_use_worker_id(self, worker_id: str | None) -> bool:
        if self.worker_ids is None or ADMIN in self.roles:
            return True
        if worker_id is None:
            return False
        for pattern in self.worker_ids:
            if pattern.endswith("*"):
                if worker_id.startswith(pattern[:-1]):
                    return True
            elif hmac.compare_digest(pattern, worker_id):
                return True
        return False


EVERYONE = Principal(frozenset(ROLES), name="no tokens configured")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_token_line(line: str, where: str) -> tuple[str, Principal]:
    """``"worker[w1]:TOKEN"`` -> (token, Principal); a TokenError names ``where``."""
    roles_text, colon, token = line.partition(":")
    # The roles part may not hold a colon; a bracket list may hold commas.
    if not colon:
        raise TokenError(f"{where}: expected ROLES:TOKEN (e.g. client:TOKEN), found no ':'")
    token = token.strip()
    roles: set[str] = set()
    worker_ids: tuple[str, ...] | None = None
    for part in _split_roles(roles_text, where):
        match = _ROLE.fullmatch(part)
        if not match or match.group(1) not in ROLES:
            # Echo the role only if it looks like one: the line may be a misplaced token.
            shown = repr(part.strip()) if re.fullmatch(r"\s*[a-z]{1,12}\s*", part) else ""
            raise TokenError(
                f"{where}: unknown role {shown or '(not shown)'} (roles: client, worker, admin; "
                "a worker may be bound as worker[id,id] or worker[prefix*])"
            )
        role, bound = match.groups()
        if role in roles:
            raise TokenError(f"{where}: the role {role} is given twice")
        if bound is not None:
            if role != WORKER:
                raise TokenError(f"{where}: only the worker role can be bound to worker ids")
            ids = tuple(i.strip() for i in bound.split(","))
            bad = [i for i in ids if not _WORKER_ID.fullmatch(i)]
            if not ids or bad:
                raise TokenError(
                    f"{where}: worker[...] needs worker ids or prefixes ending in *, "
                    f"comma-separated; bad: {', '.join(repr(i) for i in bad) or 'none given'}"
                )
            worker_ids = ids
        roles.add(role)
    if not token:
        raise TokenError(f"{where}: the token after ':' is empty")
    if not _TOKEN.fullmatch(token):
        raise TokenError(
            f"{where}: a token may hold only letters, digits and - . _ ~ + / (then = padding)"
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenError(
            f"{where}: the token is shorter than {MIN_TOKEN_LENGTH} characters; "
            "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return token, Principal(frozenset(roles), worker_ids, where)


def _split_roles(text: str, where: str) -> list[str]:
    """Split ``client,worker[a,b]`` at the commas outside brackets."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if depth not in (0, 1):
            raise TokenError(f"{where}: unbalanced brackets in the roles")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if depth:
        raise TokenError(f"{where}: unbalanced brackets in the roles")
    parts.append(current)
    return parts


class TokenSet:
    """The configured tokens, by SHA-256 digest."""

    def __init__(self) -> None:
        self._by_digest: dict[bytes, Principal] = {}

    def __len__(self) -> int:
        return len(self._by_digest)

    def add(self, token: str, principal: Principal) -> None:
        digest = _digest(token)
        if digest in self._by_digest:
            first = self._by_digest[digest].name
            raise TokenError(f"{principal.name}: the same token is already defined ({first})")
        self._by_digest[digest] = replace(principal, digest=digest)

    def add_lines(self, lines: Iterable[str], source: str) -> None:
        """Token file lines: one ``ROLES:TOKEN`` a line, ``#`` comments, blank lines."""
        for number, raw in enumerate(lines, 1):
            line = raw.split("#", 1)[0].strip()  # no token or role holds a '#'
            if line:
                self.add(*parse_token_line(line, f"{source} line {number}"))

    def add_env(self, value: str, variable: str = "TASKFRAME_TOKENS") -> None:
        """``TASKFRAME_TOKENS``: the same entries, separated by ``;`` or whitespace."""
        entries = [e for e in re.split(r"[;\s]+", value) if e]
        for number, entry in enumerate(entries, 1):
            self.add(*parse_token_line(entry, f"{variable} entry {number}"))

    def identify(self, token: str) -> Principal | None:
        # Looked up by SHA-256 digest: timing can tell nothing about a stored token.
        digest = _digest(token)
        principal = self._by_digest.get(digest)
        if principal is None or not hmac.compare_digest(principal.digest, digest):
            return None
        return principal

    def summary(self) -> str:
        counts = {role: 0 for role in ROLES}
        for principal in self._by_digest.values():
            for role in principal.roles:
                counts[role] += 1
        return ", ".join(f"{n} {role}" for role, n in counts.items() if n)


def load_tokens(token_file: str | None, env_value: str | None) -> TokenSet:
    """The tokens of ``--token-file`` and ``TASKFRAME_TOKENS``; TokenError if unusable."""
    tokens = TokenSet()
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenError(f"cannot read the token file {token_file}: {exc}") from None
        tokens.add_lines(lines, f"token file {token_file}")
    if env_value:
        tokens.add_env(env_value)
    return tokens


def _unauthorized(description: str, invalid: bool) -> APIError:
    challenge = 'Bearer realm="taskframe"'
    if invalid:
        challenge += ', error="invalid_token"'
    return APIError(
        falcon.HTTP_401,
        "Unauthorized",
        description,
        headers={"WWW-Authenticate": challenge},
        code=ErrorCode.UNAUTHORIZED,
    )


def bearer_token(req: falcon.Request) -> str | None:
    header = req.get_header("Authorization")
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return token.strip()


class Authenticator:
    """Falcon middleware: every route needs one of the roles the route table gives it.

    ``routes`` maps (URI template, method) to the roles allowed; a route not in
    the table is for admin tokens only, so a route added without a decision is
    closed, not open. With no tokens at all, everyone may do everything.
    ``throttle`` limits the bad tokens one client address may send.
    """

    def __init__(
        self,
        tokens: TokenSet,
        routes: dict[tuple[str, str], frozenset[str]],
        throttle: AuthThrottle | None = None,
        refusals: RefusalLog | None = None,
    ) -> None:
        self.tokens = tokens
        self.routes = routes
        self.throttle = throttle
        self.refusals = refusals or RefusalLog(log)

    @property
    def enabled(self) -> bool:
        return len(self.tokens) > 0

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]
    ) -> None:
        if not self.enabled:
            req.context.principal = EVERYONE
            return
        token = bearer_token(req)
        if token is not None and self.throttle is not None:
            # Before the token is looked at: a right guess gets the same answer.
            wait = self.throttle.retry_after(req.remote_addr)
            if wait is not None:
                req.context.principal = None
                self.refusals.refused(req, "throttled (429)")
                raise APIError(
                    falcon.HTTP_429,
                    "Too many requests",
                    f"too many bad tokens from {req.remote_addr} (more than "
                    f"{self.throttle.max_failures - 1} in {self.throttle.window:g} s); "
                    f"retry in {wait} s",
                    headers={"Retry-After": str(wait)},
                    code=ErrorCode.RATE_LIMITED,
                )
        principal = self.tokens.identify(token) if token else None
        req.context.principal = principal
        if token is not None and principal is None and self.throttle is not None:
            if self.throttle.failed(req.remote_addr):
                log.warning(
                    "throttling %s: %d bad tokens within %gs; its requests with a token "
                    "are answered 429 until fewer are that recent",
                    *(req.remote_addr, self.throttle.max_failures, self.throttle.window),
                )
        # (Falcon answers an unknown path 404 without calling this.)
        needed = self.routes.get((req.uri_template or "", req.method), frozenset({ADMIN}))
        if needed == OPEN:
            return
        if principal is None:
            self._refuse(req, "no token" if token is None else "bad token")
            if token is None:
                raise _unauthorized(
                    "this server needs a token: send the header 'Authorization: Bearer TOKEN'",
                    invalid=False,
                )
            raise _unauthorized("the token is not valid on this server", invalid=True)
        if not principal.may(needed):
            self._refuse(
                req, "wrong role", f" (roles {_names(principal.roles)}, needs {_names(needed)})"
            )
            raise APIError(
                falcon.HTTP_403,
                "Forbidden",
                f"{req.method} {req.path} needs the role {_names(needed, ' or ')}; "
                f"this token has {_names(principal.roles, ' and ')}",
                code=ErrorCode.FORBIDDEN,
            )

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        # An anonymous caller learns from /health only whether the server is up.
        if (
            self.enabled
            and req.uri_template == "/health"
            and getattr(req.context, "principal", None) is None
            and isinstance(resp.media, dict)
        ):
            resp.media = {key: resp.media.get(key) for key in HEALTH_PUBLIC_FIELDS}

    def _refuse(self, req: falcon.Request, why: str, detail: str = "") -> None:
        self.refusals.refused(req, why, detail)


def _names(roles: Iterable[str], sep: str = ", ") -> str:
    return sep.join(role for role in ROLES if role in roles)


def require_worker_id(req: falcon.Request, worker_id: str | None) -> None:
    """403 unless the caller's token may act as ``worker_id`` (bound worker tokens)."""
    principal: Principal | None = getattr(req.context, "principal", None)
    if principal is None or principal.may_use_worker_id(worker_id):
        return
    if worker_id is None:
        raise APIError(
            falcon.HTTP_403,
            "Forbidden",
            "this token is bound to worker ids: the request must name its worker_id",
            errors={"worker_id": ["required with a token bound to worker ids"]},
            code=ErrorCode.FORBIDDEN,
        )
    raise APIError(
        falcon.HTTP_403,
        "Forbidden",
        f"this token may not act as worker {worker_id!r}",
        errors={"worker_id": [f"this token is bound to {', '.join(principal.worker_ids or ())}"]},
        code=ErrorCode.FORBIDDEN,
    )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; names and ``0.0.0.0`` are not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False
