"""Who may reach the API: the HTTP access settings, apart from the engine's
:class:`~taskframe.server.config.ServerConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field

from taskframe.server.http.auth import TokenSet
from taskframe.server.http.origin import AllowedHosts


@dataclass(frozen=True)
class AccessConfig:
    tokens: TokenSet | None = field(default=None, compare=False, repr=False)
    """Bearer tokens with roles; None or empty: every endpoint is open."""
    allowed_hosts: AllowedHosts | None = field(default=None, compare=False, repr=False)
    """Without tokens, the ``Host`` names answered (IP addresses always are); None: any."""
    max_auth_failures: int = 20
    """Bad tokens one client address may send per minute before it gets 429 (0: no limit)."""
