"""Airflow's names across 3.0-3.3: the task SDK took the exceptions over in 3.2 (airflow.exceptions re-exports
some of them only)."""

from __future__ import annotations

from airflow.sdk import BaseSensorOperator
from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

try:  # Airflow >= 3.2 (task SDK 1.2)
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:  # Airflow 3.0, 3.1
    from airflow.exceptions import AirflowException, AirflowFailException


def not_found_errors() -> tuple[type[BaseException], ...]:
    """Every class a missing connection is raised as (the task SDK's and the core's, which 3.0-3.1 keep apart)."""
    found = []
    for module in ("airflow.sdk.exceptions", "airflow.exceptions"):
        try:
            found.append(__import__(module, fromlist=["AirflowNotFoundException"]).AirflowNotFoundException)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


__all__ = ["AirflowException", "AirflowFailException", "BaseEventTrigger", "BaseSensorOperator", "BaseTrigger",
           "TriggerEvent", "not_found_errors"]
