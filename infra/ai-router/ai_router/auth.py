"""Bearer-key check for every route but GET /health."""

from __future__ import annotations

import hmac

from ai_router.errors import ApiError


def is_authorized(authorization: str | None, keys: tuple[str, ...]) -> bool:
    """True when the Authorization header carries one of the configured keys.

    Every key is compared, in constant time, with no early exit, so response timing reveals
    neither how much of a key matched nor which of several keys was close.
    """
    scheme, _, token = (authorization or "").strip().partition(" ")
    presented = token.strip().encode("utf-8")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented, key.encode("utf-8"))
    return matched and scheme.lower() == "bearer"


def require_key(authorization: str | None, keys: tuple[str, ...]) -> None:
    if not is_authorized(authorization, keys):
        # The message never says whether a header was present or which part was wrong.
        raise ApiError(
            401,
            "Invalid or missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
