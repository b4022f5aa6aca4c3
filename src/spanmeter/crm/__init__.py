"""CRM CSV files: account domains, column templates, spreadsheet-safe cells, atomic files and the
accounts roll-up, shared by the `csv` exporter (exporters/csv.py) and `spanmeter export csv`."""
