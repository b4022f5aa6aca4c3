"""Storage of usage records: the Store protocol and its SQLite and PostgreSQL implementations."""
