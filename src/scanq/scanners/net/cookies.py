"""Set-Cookie headers read for the cookie checks: attributes and what a cookie is for (never its value).

What a cookie is for is told by its name, as the MDN HTTP Observatory does (``cookies.js``):
a **session** cookie's name holds ``sess`` or ``login`` (the Observatory's markers) or ``sid``
or ``auth`` (ours too: Express's ``connect.sid``, ASP.NET's ``.ASPXAUTH`` and the like are
session cookies the Observatory misses); an **anti-CSRF** cookie's holds ``csrf`` (or ``xsrf``:
Angular's ``XSRF-TOKEN``). Anti-CSRF wins when a name has both.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

SESSION_MARKERS = ("sess", "login", "sid", "auth")
CSRF_MARKERS = ("csrf", "xsrf")
SAMESITE_VALUES = frozenset({"strict", "lax", "none"})


class CookieKind(enum.StrEnum):
    """What a cookie is for, as far as its name tells."""

    SESSION = "session"
    CSRF = "anti-CSRF"
    OTHER = "other"


@dataclass(frozen=True, kw_only=True, slots=True)
class Cookie:
    """One ``Set-Cookie``: the name and the security attributes, without the value."""

    name: str
    secure: bool
    httponly: bool
    samesite: str | None  # lowercased value; "" when the attribute has none; None when absent

    @property
    def kind(self) -> CookieKind:
        return cookie_kind(self.name)

    @property
    def samesite_problem(self) -> str | None:
        """Why the SameSite attribute is unusable ("missing", "invalid", "None without Secure"), or None."""
        if self.samesite is None:
            return "missing"
        if self.samesite not in SAMESITE_VALUES:
            return "invalid"
        if self.samesite == "none" and not self.secure:
            return "None without Secure"  # browsers refuse such a cookie
        return None


def cookie_kind(name: str) -> CookieKind:
    """Session, anti-CSRF or other, by the cookie's name."""
    lowered = name.lower()
    if any(marker in lowered for marker in CSRF_MARKERS):
        return CookieKind.CSRF
    if any(marker in lowered for marker in SESSION_MARKERS):
        return CookieKind.SESSION
    return CookieKind.OTHER


def parse_set_cookie(header: str) -> Cookie | None:
    """A ``Set-Cookie`` value's cookie (None without a name); the value is dropped."""
    first, *attributes = header.split(";")
    name = first.split("=", 1)[0].strip()
    if not name:
        return None
    seen: dict[str, str] = {}
    for attribute in attributes:
        key, _, value = attribute.partition("=")
        seen.setdefault(key.strip().lower(), value.strip().lower())
    return Cookie(
        name=name,
        secure="secure" in seen,
        httponly="httponly" in seen,
        samesite=seen.get("samesite"),
    )
