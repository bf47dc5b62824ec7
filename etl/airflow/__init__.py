"""The Airflow side of the package (installed with it, found by Airflow through the ``apache_airflow_provider``
entry point): the ``webengage`` connection type, its form, and :class:`~etl.airflow.hook.WebEngageHook`.

Only :mod:`etl.airflow.hook` imports Airflow; :mod:`etl.airflow.provider` (read by Airflow's providers
manager) and the rest of ``etl`` do not.
"""
