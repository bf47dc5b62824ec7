"""Helpers shared by the WebEngage DAGs (the only place that imports Airflow besides the DAG files)."""
