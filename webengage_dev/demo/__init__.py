"""Embedded DuckDB demo warehouse with realistic, messy data, and helpers that change it."""

from webengage_dev.demo.mutate import add_events, change_users
from webengage_dev.demo.warehouse import DemoWarehouseSummary, build_demo_warehouse, demo_as_of

__all__ = ["DemoWarehouseSummary", "add_events", "build_demo_warehouse", "change_users", "demo_as_of"]
