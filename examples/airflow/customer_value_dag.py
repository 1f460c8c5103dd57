"""Airflow DAGs for customer-value.

* ``customer_value_daily``: every day, ``validate`` then ``run --as-of {{ ds }}``. A run as of a
  date is reproducible, so retries and reruns (``airflow tasks clear``) simply replace that
  date's partition. Exit codes 2 (configuration or usage error) and 3 (the data failed its
  checks: too many rejects, nothing by as_of, stale input) fail at once without retries: the same
  config and input would fail again. Exit code 1 (I/O, object store, a live lock holder, a stop by
  a signal) is retried.
* ``customer_value_backfill``: triggered by hand with ``from``/``to``/``every`` params; reads the
  inputs once and publishes one partition per date.

Settings come from the environment of the worker:
``CUSTOMER_VALUE_BIN`` (path of the binary, default ``customer-value`` on PATH) and
``CUSTOMER_VALUE_CONFIG`` (config file, default ``config/default.toml``), plus the object-store
credentials (``AWS_*``, ``AZURE_*``, ``GOOGLE_*``). Logs are JSON lines carrying run_id and as_of.
"""
from __future__ import annotations

import os
import subprocess
from datetime import datetime, timedelta

from airflow import DAG
from airflow.exceptions import AirflowException, AirflowFailException

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
except ImportError:  # Airflow 2
    from airflow.operators.python import PythonOperator

BIN = os.environ.get("CUSTOMER_VALUE_BIN", "customer-value")


def customer_value(*args: str) -> None:
    """Runs the binary; exits 2 (bad config) and 3 (bad data) are final, 1 may be retried."""
    env = dict(os.environ, CUSTOMER_VALUE_LOG_FORMAT="json", CUSTOMER_VALUE_NO_PROGRESS="1")
    proc = subprocess.run([BIN, *args], env=env, capture_output=True, text=True)
    print(proc.stdout)
    print(proc.stderr)
    if proc.returncode == 2:
        raise AirflowFailException(f"customer-value {args[0]}: configuration error: {proc.stderr.strip()[-500:]}")
    if proc.returncode == 3:
        raise AirflowFailException(f"customer-value {args[0]}: the data failed its checks: {proc.stderr.strip()[-500:]}")
    if proc.returncode != 0:
        raise AirflowException(f"customer-value {args[0]} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")


default_args = {
    "owner": "data-engineering",
    "retries": 3,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
}

with DAG(
    dag_id="customer_value_daily",
    start_date=datetime(2024, 1, 1),
    schedule="@daily",
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["customer-value"],
) as daily:
    validate = PythonOperator(
        task_id="validate",
        python_callable=customer_value,
        # The same as_of as the run: validate applies the run's data checks as of that day.
        op_args=["validate", "--as-of", "{{ ds }}"],
    )
    run = PythonOperator(
        task_id="run",
        python_callable=customer_value,
        # {{ ds }} is the logical date: the run is "as of" that day.
        op_args=["run", "--as-of", "{{ ds }}"],
    )
    validate >> run

with DAG(
    dag_id="customer_value_backfill",
    start_date=datetime(2024, 1, 1),
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args={**default_args, "retries": 1},
    params={"from": "2024-01-01", "to": "2024-12-31", "every": "month"},
    tags=["customer-value"],
) as backfill:
    PythonOperator(
        task_id="backfill",
        python_callable=customer_value,
        op_args=[
            "backfill",
            "--from", "{{ params['from'] }}",
            "--to", "{{ params['to'] }}",
            "--every", "{{ params['every'] }}",
        ],
    )
