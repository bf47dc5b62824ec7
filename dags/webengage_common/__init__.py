"""Helpers shared by the WebEngage DAGs (with ``etl.airflow.hook``, the only code that imports Airflow besides the
DAG files)."""
