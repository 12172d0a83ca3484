"""Who is calling: an API key (``X-API-Key``, ``Authorization: ApiKey …`` or ``api_key=`` for desktop GIS
that cannot set headers), an OIDC/JWT bearer token verified against the configured issuers' keys, or nobody
(anonymous). A credential that is present but wrong, revoked or expired is an error (401) — never a silent
fall-back to anonymous.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import jwt

from lantu.config.policy import ANONYMOUS, Identity
from lantu.config.settings import Settings
from lantu.providers.accounts import account_for_key
from lantu.providers.pool import Pool

KEY_CACHE_S = 30.0


class BadCredentials(Exception):
    """A key or token was presented and is not valid; the message says why (never echoes the secret)."""


@dataclass(frozen=True)
class Issuer:
    issuer: str
    audience: str | None
    jwks: dict | None  # a JWK set read from a file, or
    jwks_client: jwt.PyJWKClient | None = None  # the issuer's JWKS endpoint (keys cached, refetched on a new kid)
    roles_claim: str = "roles"
    attribute_claims: tuple[str, ...] = ("xzqdm",)

    def key_for(self, token: str):
        if self.jwks_client is not None:
            return self.jwks_client.get_signing_key_from_jwt(token).key
        kid = jwt.get_unverified_header(token).get("kid")
        jwk = next((k for k in (self.jwks or {}).get("keys", []) if kid is None or k.get("kid") == kid), None)
        if jwk is None:
            raise BadCredentials("the bearer token's signing key is unknown")
        return jwt.PyJWK(jwk).key


def load_issuers(settings: Settings) -> list[Issuer]:
    """The trusted issuers: each with ``jwks_file`` (a JWK set on disk) or ``jwks_url`` (its JWKS endpoint)."""
    out = []
    for entry in settings.oidc_issuers:
        if "jwks_url" in entry:
            jwks, client = None, jwt.PyJWKClient(entry["jwks_url"], cache_keys=True, lifespan=3600, timeout=10)
        else:
            jwks, client = json.loads(Path(entry["jwks_file"]).read_text("utf-8")), None
        out.append(Issuer(entry["issuer"], entry.get("audience"), jwks, client, entry.get("roles_claim", "roles"),
                          tuple(entry.get("attribute_claims", ("xzqdm",)))))
    return out


class IdentityResolver:
    def __init__(self, settings: Settings, pool_getter):
        self.issuers = load_issuers(settings)
        self._pool_getter = pool_getter
        self._cache: dict[str, tuple[float, Identity | None]] = {}
        self._lock = threading.Lock()

    @property
    def pool(self) -> Pool:
        return self._pool_getter()

    def resolve(self, headers, args) -> Identity:
        auth = headers.get("Authorization", "")
        key = headers.get("X-API-Key") or (auth[7:].strip() if auth[:7].lower() == "apikey " else None) \
            or args.get("api_key")
        if auth[:7].lower() == "bearer ":
            return self._token(auth[7:].strip())
        if key:
            return self._key(key)
        return ANONYMOUS

    def _key(self, key: str) -> Identity:
        import time

        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is None or now - hit[0] > KEY_CACHE_S:  # a revoked key stops working within KEY_CACHE_S
            account = account_for_key(self.pool, key)
            ident = Identity(account.name, frozenset(account.roles), dict(account.attributes), True) \
                if account else None
            with self._lock:
                self._cache[key] = hit = (now, ident)
        if hit[1] is None:
            raise BadCredentials("the API key is not valid (unknown, revoked or expired)")
        return hit[1]

    def _token(self, token: str) -> Identity:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise BadCredentials("the bearer token is not a JWT") from None
        issuer = next((i for i in self.issuers if i.issuer == unverified.get("iss")), None)
        if issuer is None:
            raise BadCredentials("the bearer token's issuer is not trusted here")
        try:
            key = issuer.key_for(token)
            claims = jwt.decode(token, key, algorithms=["RS256", "ES256", "PS256"], audience=issuer.audience,
                                issuer=issuer.issuer, options={"require": ["exp", "iss", "sub"]})
        except jwt.ExpiredSignatureError:
            raise BadCredentials("the bearer token has expired") from None
        except jwt.PyJWKClientError as exc:
            raise BadCredentials(f"the issuer's signing keys could not be read ({type(exc).__name__})") from None
        except jwt.PyJWTError as exc:
            raise BadCredentials(f"the bearer token is not valid ({type(exc).__name__})") from None
        roles = claims.get(issuer.roles_claim) or []
        if isinstance(roles, str):
            roles = roles.split()
        attrs = {c: claims[c] for c in issuer.attribute_claims if c in claims}
        return Identity(f"oidc:{claims['sub']}", frozenset(str(r) for r in roles), attrs, True)
