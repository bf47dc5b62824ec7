"""The mapping files: typed models of ``mappings/users.toml`` (:mod:`.users`), ``mappings/events.toml``
(:mod:`.events`) and ``mappings/cohorts.toml`` (:mod:`.cohorts`), their loading (TOML, file resolution
through :mod:`etl.resources`, ``WEBENGAGE_COHORTS_CONFIG``) and validation, and their JSON Schemas
(:mod:`.schema`).

One direction everywhere: the key of a mapping table is what the warehouse has (a column, a source event or
property name), the value what WebEngage gets. One vocabulary: ``query`` names a SQL file in all three.

Nothing is imported here, so reading the cohort names (:func:`etl.mappings.cohorts.configured_names`, at
Airflow DAG parse time) does not load pandas.
"""
