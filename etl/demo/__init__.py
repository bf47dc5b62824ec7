"""Embedded DuckDB demo warehouse with realistic, messy data, and helpers that change it."""

from etl.demo.mutate import add_events, change_users
from etl.demo.warehouse import DEFAULT_AS_OF, DemoWarehouseSummary, build_demo_warehouse

__all__ = ["DEFAULT_AS_OF", "DemoWarehouseSummary", "add_events", "build_demo_warehouse", "change_users"]
