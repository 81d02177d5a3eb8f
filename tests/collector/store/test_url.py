from __future__ import annotations

from pathlib import Path

import pytest

from collector.store.errors import StoreError
from collector.store.url import parse_store_url, same_store


def test_a_path_is_an_embedded_store() -> None:
    for text in ("var/inferwatch.duckdb", "duckdb:var/inferwatch.duckdb", "duckdb:///tmp/x.duckdb"):
        url = parse_store_url(text)
        assert url.backend == "embedded" and url.catalog is None
    assert parse_store_url("duckdb:///tmp/x.duckdb").path == Path("/tmp/x.duckdb")


def test_ducklake_urls_become_a_catalog_and_a_data_path() -> None:
    url = parse_store_url("ducklake:postgres://iw@db.internal:5433/fleet?data=s3://bucket/lake")
    assert (url.backend, url.catalog, url.data_path) == (
        "ducklake", "postgres:dbname=fleet host=db.internal port=5433 user=iw", "s3://bucket/lake/",
    )  # fmt: skip
    url = parse_store_url("ducklake:sqlite:var/lake.sqlite")
    assert (url.catalog, url.data_path) == ("sqlite:var/lake.sqlite", "var/lake.sqlite.files/")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "store URL is empty"),
        ("postgres://h/db", "unknown scheme"),
        ("s3://bucket/x.duckdb", "unknown scheme"),
        ("ducklake:mysql://h/db?data=/d", "DuckLake needs a postgres:// or sqlite: catalog"),
        ("ducklake:postgres://u@h:5432/db", "a PostgreSQL catalog needs ?data=DIR"),
        ("ducklake:postgres://u:secret@h:5432/db?data=/d", "put the password in PGPASSWORD or ~/.pgpass"),
        ("ducklake:postgres://u@h:port/db?data=/d", "the port is not a number"),
        ("ducklake:postgres://u@h:5432/?data=/d", "give host and database"),
        ("ducklake:sqlite:x.sqlite?dat=/d", "unknown option(s) dat"),
    ],
)
def test_bad_urls_name_the_url_and_the_forms(text: str, message: str) -> None:
    with pytest.raises(StoreError) as info:
        parse_store_url(text)
    assert message in str(info.value)
    assert "secret" not in str(info.value)


def test_same_store_compares_files_not_spellings(tmp_path: Path) -> None:
    assert same_store(tmp_path / "a.duckdb", f"{tmp_path}/../{tmp_path.name}/a.duckdb")
    assert not same_store(tmp_path / "a.duckdb", tmp_path / "b.duckdb")
    assert not same_store("ducklake:sqlite:a.sqlite", "not a url://")
