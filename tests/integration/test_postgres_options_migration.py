"""Migration 2 turns ``options`` from jsonb into json: rows written before keep working, new ones keep their text."""

from __future__ import annotations

import msgspec

from scanq.ids import new_scan_id
from scanq.store.postgres import PostgresStore, migrations
from scanq.store.postgres.connection import connect
from tests.contract.helpers import new_scan

OPTIONS_AS_SENT = {"huge": 1.5e308, "neg_zero": -0.0, "b": 1, "a": 2.0}


async def test_a_version_1_table_is_migrated_and_keeps_its_rows(postgres_empty_database_url: str) -> None:
    [(version_1, name_1, sql_1), *_] = migrations()
    old_id = new_scan_id()
    conn = await connect(postgres_empty_database_url, {})
    try:
        await conn.execute(sql_1)
        await conn.execute(
            "CREATE TABLE scanq_migrations (version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute("INSERT INTO scanq_migrations (version, name) VALUES ($1, $2)", version_1, name_1)
        await conn.execute(
            "INSERT INTO scans (scan_id, status, scanner, options, max_attempts, created_at, updated_at, available_at)"
            " VALUES ($1::uuid, 'Accepted', 'noop', '{\"depth\": 2}'::jsonb, 3, now(), now(), now())",
            old_id,
        )
    finally:
        await conn.close()

    async with PostgresStore(postgres_empty_database_url) as store:
        assert store.schema_version == migrations()[-1][0]
        old = await store.get(scan_id=old_id)
        new = await store.create(scan=new_scan(options=OPTIONS_AS_SENT))
        reread = await store.get(scan_id=new.scan.scan_id)

    assert old.options == {"depth": 2}
    assert msgspec.json.encode(reread.options) == msgspec.json.encode(OPTIONS_AS_SENT)
    conn = await connect(postgres_empty_database_url, {})
    try:
        column_type = await conn.fetchval(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'scans' AND column_name = 'options'"
        )
        stored_text = await conn.fetchval("SELECT options::text FROM scans WHERE scan_id = $1::uuid", new.scan.scan_id)
    finally:
        await conn.close()
    assert column_type == "json"
    assert stored_text == msgspec.json.encode(OPTIONS_AS_SENT).decode()
