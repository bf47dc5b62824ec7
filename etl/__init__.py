"""webengage-sync: reverse-ETL from a data warehouse to WebEngage."""

__version__ = "0.1.0"
