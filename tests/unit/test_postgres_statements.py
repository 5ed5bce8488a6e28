"""Loading ``queries.sql``: statements by name, shared fragments, placeholders (no database needed)."""

from __future__ import annotations

import pytest

from scanq.store.postgres import statements
from scanq.store.sql_rules import literal

TEXT = """\
-- file header, not a statement {ignored}
-- fragment: shared_set
-- the fragment's own comment, not inlined
SET a = {channel}
-- name: first
-- a statement's comment stays in it
UPDATE t {shared_set} WHERE x = 1;
-- name: second
UPDATE u {shared_set};
"""


def test_sections_are_split_by_their_own_header_only() -> None:
    assert statements.parse_queries(TEXT) == {
        "first": "-- a statement's comment stays in it\nUPDATE t {shared_set} WHERE x = 1",
        "second": "UPDATE u {shared_set}",
    }
    assert statements.parse_fragments(TEXT) == {"shared_set": "SET a = {channel}"}


def test_a_fragment_is_filled_into_every_statement_that_names_it() -> None:
    fragment = statements.fill("shared_set", statements.parse_fragments(TEXT)["shared_set"], {"channel": "'c'"})
    filled = {
        name: statements.fill(name, sql, {"shared_set": fragment})
        for name, sql in statements.parse_queries(TEXT).items()
    }
    assert filled["first"].endswith("UPDATE t SET a = 'c' WHERE x = 1")
    assert filled["second"] == "UPDATE u SET a = 'c'"


def test_an_unknown_placeholder_names_its_statement() -> None:
    with pytest.raises(KeyError, match=r"statement 'second' uses unknown placeholder \{shared_set\}"):
        statements.fill("second", "UPDATE u {shared_set}", {})


def test_the_three_claims_share_one_set_clause_and_one_set_of_side_effects() -> None:
    text = statements.sql_dir().joinpath(statements.QUERIES_FILE).read_text(encoding="utf-8")
    fragments = statements.parse_fragments(text)
    assert set(fragments) == {"claim_set", "claimed_effects"}
    events_channel = literal(statements.EVENTS_CHANNEL)
    for claim in (statements.CLAIM, statements.CLAIM_UNTARGETED, statements.CLAIM_CAPPED):
        assert fragments["claim_set"] in claim
        assert fragments["claimed_effects"].replace("{events_channel}", events_channel) in claim
        assert "{" + "claim" not in claim


def test_no_statement_keeps_a_placeholder() -> None:
    for name, sql in statements.load_queries().items():
        assert statements.PLACEHOLDER.search(sql) is None, name
