"""Warehouse access: engines from URLs, SQL files by name, chunked reads."""
