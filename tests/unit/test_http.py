"""The wire helpers: every way a body can fail to be JSON is the one 400 ``malformed_json``."""

from __future__ import annotations

from typing import Any, cast

import msgspec
import pytest

from scanq.api.errors import ApiError
from scanq.api.http import decode_json
from scanq.api.schemas import ScanRequest
from scanq.exceptions import ValidationError

INVALID_UTF8 = b'{"target": "\xff"}'


class RaisingDecoder:
    """A decoder that fails as released msgspec versions do on invalid UTF-8 inside a string."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def decode(self, body: bytes) -> Any:
        raise self.exc


def unicode_error() -> UnicodeDecodeError:
    return UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")


def test_a_unicode_decode_error_from_the_decoder_is_malformed_json() -> None:
    decoder = cast(msgspec.json.Decoder[ScanRequest], RaisingDecoder(unicode_error()))

    with pytest.raises(ApiError) as raised:
        decode_json(INVALID_UTF8, decoder)

    assert raised.value.status_code == 400
    assert raised.value.code == "malformed_json"
    assert "UTF-8" in raised.value.detail


def test_a_unicode_decode_error_while_checking_a_wrong_shape_is_malformed_json(monkeypatch: pytest.MonkeyPatch) -> None:
    # A wrong type comes first (a typed ValidationError), then the untyped re-parse meets the invalid UTF-8.
    decoder = cast(msgspec.json.Decoder[ScanRequest], RaisingDecoder(msgspec.ValidationError("Expected `str`")))

    def decode(body: bytes) -> Any:
        raise unicode_error()

    monkeypatch.setattr(msgspec.json, "decode", decode)

    with pytest.raises(ApiError) as raised:
        decode_json(b'{"target": 1, "x": "\xff"}', decoder)

    assert raised.value.code == "malformed_json"


@pytest.mark.parametrize(
    "body",
    [INVALID_UTF8, b'{"\xff": 1}', b'{"options": {"a": "\xc3"}}', b'{"target": "\xed\xa0\x80"}', b"\xff"],
)
def test_invalid_utf8_with_the_real_decoder_is_malformed_json(body: bytes) -> None:
    with pytest.raises(ApiError) as raised:
        decode_json(body, msgspec.json.Decoder(ScanRequest))

    assert raised.value.code == "malformed_json"


def test_a_wrong_shape_in_valid_json_stays_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        decode_json(b'{"target": 1}', msgspec.json.Decoder(ScanRequest))
