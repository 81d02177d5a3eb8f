"""The store: protocols, the embedded DuckDB backend, the read-only and remote doors, schema and migrations, row
types.
"""
