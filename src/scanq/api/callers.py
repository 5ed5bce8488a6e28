"""Who is calling: the ``Caller`` each handler acts for, from the request's bearer token.

With authentication off every request is ``OPERATOR`` (tenant ``default``,
every scope). With it on, ``Authorization: Bearer <token>`` is looked up
through ``Authenticator`` (a short cache in front of the store) and anything
else is ``Unauthenticated``, which the error handlers answer with 401 and a
``WWW-Authenticate: Bearer`` challenge before the handler reads or writes.
Each handler calls this first, so the hot path and CORS answers get the same
check as the routed stack.
"""

from __future__ import annotations

from starlette.requests import Request

from scanq.auth import Authenticator
from scanq.models import OPERATOR, Caller


class Callers:
    """Resolve a request's caller.

    Args:
        authenticator: checks bearer tokens; None: authentication is off.
    """

    def __init__(self, authenticator: Authenticator | None = None) -> None:
        self._authenticator = authenticator

    @property
    def required(self) -> bool:
        return self._authenticator is not None

    async def __call__(self, request: Request) -> Caller:
        if self._authenticator is None:
            return OPERATOR
        return await self._authenticator.authenticate(request.headers.get("authorization"))

    async def authenticate(self, authorization: bytes | None) -> Caller:
        """The caller of a request whose first ``Authorization`` header, as bytes, is ``authorization`` (hot path)."""
        if self._authenticator is None:
            return OPERATOR
        return await self._authenticator.authenticate(
            None if authorization is None else authorization.decode("latin-1")
        )

    async def aclose(self) -> None:
        if self._authenticator is not None:
            await self._authenticator.aclose()


OPEN = Callers()
"""Authentication off: every caller is ``OPERATOR``."""

__all__ = ["OPEN", "Callers"]
