"""Bearer tokens (JWT, PyJWT): signature, audience, expiry, issuer and scope.

Keys come from files named by settings: an HS256 secret, an RS256 public key
(PEM) or a JWKS file (RS256 keys by ``kid``); each algorithm is bound to its own
key, so a token cannot pick a weaker algorithm or use the public key as an HMAC
secret. A verified token is remembered until it expires, so a client's next
request costs no signature check. Tokens and secrets are never logged.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from stream.config import Settings
from stream.errors import ConfigError

LEEWAY_S = 5.0
_CACHE_MAX = 10_000


class AuthError(Exception):
    """A request the service refuses: ``status`` 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Principal:
    """Who made a verified request: the token's subject (the rate limit's client)."""

    subject: str


class TokenVerifier:
    """Verifies bearer tokens against the configured keys."""

    def __init__(self, settings: Settings) -> None:
        self.audience = settings.jwt_audience
        self.issuer = settings.jwt_issuer or None
        self.scope = settings.jwt_scope
        self.hs_secret: bytes | None = None
        self.rs_key: Any = None
        self.jwks: jwt.PyJWKSet | None = None
        if settings.jwt_secret_file:
            self.hs_secret = _read(settings.jwt_secret_file, "HEARTRISK_JWT_SECRET_FILE").strip()
            if len(self.hs_secret) < 32:
                msg = "HEARTRISK_JWT_SECRET_FILE holds fewer than 32 bytes: use a longer random secret"
                raise ConfigError(msg)
        if settings.jwt_public_key_file:
            pem = _read(settings.jwt_public_key_file, "HEARTRISK_JWT_PUBLIC_KEY_FILE")
            try:
                self.rs_key = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256).prepare_key(pem)
            except jwt.InvalidKeyError as exc:
                msg = f"HEARTRISK_JWT_PUBLIC_KEY_FILE is not an RSA public key in PEM: {exc}"
                raise ConfigError(msg) from exc
        if settings.jwt_jwks_file:
            try:
                self.jwks = jwt.PyJWKSet.from_json(_read(settings.jwt_jwks_file, "HEARTRISK_JWT_JWKS_FILE").decode())
            except (jwt.PyJWKSetError, json.JSONDecodeError, ValueError) as exc:
                msg = f"HEARTRISK_JWT_JWKS_FILE is not a JWKS document: {exc}"
                raise ConfigError(msg) from exc
        if self.hs_secret is None and self.rs_key is None and self.jwks is None:
            msg = (
                "heartrisk serve needs a key to check bearer tokens: set HEARTRISK_JWT_SECRET_FILE (HS256), "
                "HEARTRISK_JWT_PUBLIC_KEY_FILE (RS256) or HEARTRISK_JWT_JWKS_FILE; or run with --dev (no auth)"
            )
            raise ConfigError(msg)
        self._cache: dict[str, tuple[Principal, float]] = {}

    def verify(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer <jwt>`` header.

        Raises:
            AuthError: 401 for a missing, malformed, expired, mis-addressed or mis-signed token;
                403 for a valid token without the required scope.
        """
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthError(401, "UNAUTHENTICATED", "send Authorization: Bearer <token>")
        token = authorization[7:].strip()
        hit = self._cache.get(token)
        if hit is not None:
            principal, exp = hit
            if time.time() <= exp + LEEWAY_S:
                return principal
            del self._cache[token]
            raise AuthError(401, "UNAUTHENTICATED", "the token has expired")
        claims = self._decode(token)
        scopes = claims.get("scope", "")
        granted = set(scopes.split()) if isinstance(scopes, str) else set()
        scp = claims.get("scp")
        if isinstance(scp, list):
            granted |= {str(s) for s in scp}
        elif isinstance(scp, str):
            granted |= set(scp.split())
        if self.scope and self.scope not in granted:
            raise AuthError(403, "FORBIDDEN", f"the token does not grant the scope {self.scope!r}")
        principal = Principal(str(claims.get("sub") or claims.get("client_id") or claims.get("azp") or "?"))
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[token] = (principal, float(claims["exp"]))
        return principal

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(401, "UNAUTHENTICATED", "the token is not a JWT") from exc
        alg = header.get("alg")
        key: Any
        if alg == "HS256" and self.hs_secret is not None:
            key = self.hs_secret
        elif alg == "RS256" and self.jwks is not None and header.get("kid"):
            try:
                key = self.jwks[str(header["kid"])].key
            except KeyError as exc:
                raise AuthError(401, "UNAUTHENTICATED", "the token's kid is not in the JWKS") from exc
        elif alg == "RS256" and self.rs_key is not None:
            key = self.rs_key
        else:
            raise AuthError(401, "UNAUTHENTICATED", f"tokens signed with {alg!r} are not accepted here")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[alg], audience=self.audience, issuer=self.issuer, leeway=LEEWAY_S,
                options={"require": ["exp", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError(401, "UNAUTHENTICATED", "the token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError(401, "UNAUTHENTICATED", f"the token is not for audience {self.audience!r}") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError(401, "UNAUTHENTICATED", "the token's signature does not verify") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(401, "UNAUTHENTICATED", f"the token is invalid: {type(exc).__name__}") from exc
        return claims


def _read(path: str, name: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        msg = f"{name}: cannot read {path!r}: {exc.strerror}"
        raise ConfigError(msg) from exc
