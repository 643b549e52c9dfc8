"""The edge's own cookie: signed, HttpOnly, set by the server so Safari does not cap it at 7 days.

It holds the visitor's anonymous id, the last Rokt click id and when that click was first seen,
signed with itsdangerous (the secret key setting). A cookie that was tampered with, is malformed
or is older than its max-age is ignored, never an error: the visitor simply starts afresh.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Final

from itsdangerous import BadSignature, TimestampSigner
from itsdangerous.encoding import base64_decode, base64_encode
from itsdangerous.signer import HMACAlgorithm

SALT: Final = "rokt-edge.cookie.v1"


@dataclass(frozen=True, slots=True)
class Visitor:
    anonymous_id: str | None = None
    click_id: str | None = None
    click_seen_at: int | None = None  # epoch seconds when this click id was first seen


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    name: str
    max_age: int  # seconds
    domain: str | None = None


class CookieJar:
    """Reads and writes the visitor cookie."""

    def __init__(self, secret_key: str, policy: CookiePolicy) -> None:
        self.policy = policy
        # A TimestampSigner over base64 JSON: itsdangerous' URL-safe serializer would try zlib on
        # every dump, which costs more than the rest of the beacon's cookie work for ~80 bytes.
        self._signer = _Signer(secret_key, salt=SALT, algorithm=_KeyedHMAC(hashlib.sha1))

    def read(self, value: str | None) -> Visitor:
        """The visitor in a cookie value (from Starlette's lenient `request.cookies`, so that a
        malformed neighbour cookie cannot hide this one)."""
        if not value:
            return Visitor()
        try:
            payload = self._signer.unsign(value, max_age=self.policy.max_age)
            data = json.loads(base64_decode(payload))
        except (BadSignature, ValueError):  # BadSignature includes SignatureExpired
            return Visitor()
        if not isinstance(data, dict):
            return Visitor()
        seen = data.get("t")
        return Visitor(
            anonymous_id=_text(data.get("a")),
            click_id=_text(data.get("c")),
            click_seen_at=seen if isinstance(seen, int) and not isinstance(seen, bool) else None,
        )

    def header(self, visitor: Visitor, *, secure: bool) -> str:
        """The Set-Cookie header value that stores `visitor` (sliding: a fresh max-age)."""
        payload = {"a": visitor.anonymous_id, "c": visitor.click_id, "t": visitor.click_seen_at}
        data = {key: v for key, v in payload.items() if v is not None}
        encoded = base64_encode(json.dumps(data, separators=(",", ":")).encode())
        value = self._signer.sign(encoded).decode()
        parts = [
            f"{self.policy.name}={value}",
            "Path=/",
            f"Max-Age={self.policy.max_age}",
            "HttpOnly",
            "SameSite=Lax",
        ]
        if self.policy.domain:
            parts.append(f"Domain={self.policy.domain}")
        if secure:
            parts.append("Secure")
        return "; ".join(parts)


class _KeyedHMAC(HMACAlgorithm):
    """The same signatures as itsdangerous' HMAC, from an HMAC state keyed once per key and copied
    per cookie, rather than keyed afresh each time: a beacon signs one cookie and checks another."""

    def __init__(self, digest_method: Any) -> None:
        super().__init__(digest_method)
        self._keyed: dict[bytes, hmac.HMAC] = {}

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        keyed = self._keyed.get(key)
        if keyed is None:
            keyed = self._keyed[key] = hmac.new(key, digestmod=self.digest_method)
        signature = keyed.copy()
        signature.update(value)
        return signature.digest()


class _Signer(TimestampSigner):
    """itsdangerous' TimestampSigner, the same cookies, with each key derived once rather than
    at every signature."""

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        cache: dict[str | bytes | None, bytes] = self.__dict__.setdefault("_derived", {})
        key = cache.get(secret_key)
        if key is None:
            key = cache[secret_key] = super().derive_key(secret_key)
        return key


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
