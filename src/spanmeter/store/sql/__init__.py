"""The SQL both backends share: the rollups, the attention counts, the query API's reads, API keys
and the exporters' outbox, written once and built in each backend's dialect (store/sql/dialect.py),
run through the connection shape of `connection.py`. The backends (store/sqlite/,
store/postgres/) add their connections, writer and migrations."""
