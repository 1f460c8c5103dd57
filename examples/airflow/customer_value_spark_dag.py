"""Airflow DAG running customer-value on Spark (``apache-airflow-providers-apache-spark``), next
to the CLI's DAGs in ``customer_value_dag.py``: every day, ``spark-submit`` of
``examples/spark/submit.py`` as of ``{{ ds }}``. The wheel must be installed on the cluster's
Python (or shipped with ``--py-files`` / a Databricks or EMR library). spark-submit reports only
success or failure, so every failure is retried; a rerun of a date replaces its partition.

Settings from the worker's environment: ``CUSTOMER_VALUE_CONFIG`` (the TOML configuration,
readable by the driver) and ``CUSTOMER_VALUE_SUBMIT`` (path of ``submit.py``).
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow import DAG
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

with DAG(
    dag_id="customer_value_spark_daily",
    start_date=datetime(2024, 1, 1),
    schedule="@daily",
    catchup=False,
    max_active_runs=1,  # the output's lock refuses a second writer anyway
    default_args={"owner": "data-engineering", "retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["customer-value", "spark"],
) as spark_daily:
    SparkSubmitOperator(
        task_id="run_on_spark",
        conn_id="spark_default",
        application=os.environ.get("CUSTOMER_VALUE_SUBMIT", "examples/spark/submit.py"),
        application_args=[
            "--config", os.environ.get("CUSTOMER_VALUE_CONFIG", "config/default.toml"),
            "--as-of", "{{ ds }}",
        ],
        conf={
            # One core per task: each task folds its customer partition on spark.task.cpus threads.
            "spark.task.cpus": "1",
            "spark.sql.shuffle.partitions": "200",
        },
    )
