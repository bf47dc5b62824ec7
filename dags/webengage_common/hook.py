"""``WebEngageHook`` lives in the installed package (:mod:`etl.airflow.hook`, registered with Airflow as the
``webengage`` connection type); re-exported here for the DAGs and for DAGs of your own."""

from __future__ import annotations

from etl.airflow.hook import WebEngageHook

__all__ = ["WebEngageHook"]
