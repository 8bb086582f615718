"""Daily refresh of the shop-analytics aggregates, orchestrated by Airflow (2.7+ and 3.x).

Each run calls `shop-analytics refresh --date {{ ds }}` for one day. Airflow runs the DAG at
01:00 UTC at the end of its data interval, so the logical date `{{ ds }}` is the day before the
run: the day that has just finished and is refreshed. With catchup=True, Airflow creates the runs
of missed days (and of every day since start_date on first deployment) one at a time.

Re-running a run ("Clear" in the UI) is safe: `refresh` replaces the day atomically in the lake
and in ClickHouse, so it is idempotent. Every run, failed or not, is recorded in the Flight SQL
table `system.refresh_runs`.

When this DAG does the refreshing, switch off the built-in scheduler of `shop-analytics serve`
(`--refresh-schedule off`, `[refresh] refresh_schedule = "off"` or SHOP_REFRESH_SCHEDULE=off) so
the two don't both refresh.
"""

import os
from datetime import timedelta

import pendulum
from airflow import DAG
from airflow.timetables.interval import CronDataIntervalTimetable

try:  # Airflow 2
    from airflow.operators.bash import BashOperator
except ImportError:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator

# The TOML configuration ([lake] and [clickhouse]); secrets stay in SHOP_CLICKHOUSE_PASSWORD and
# SHOP_S3_SECRET_ACCESS_KEY. append_env=True keeps the worker's environment, SHOP_* included.
ENV = {"SHOP_CONFIG": os.environ["SHOP_CONFIG"]} if "SHOP_CONFIG" in os.environ else {}

with DAG(
    dag_id="shop_analytics_daily_refresh",
    description="Refresh the shop-analytics aggregates of the previous day (UTC)",
    # Daily at 01:00 UTC, i.e. schedule="0 1 * * *" with data intervals spelled out: Airflow 3
    # would otherwise make the logical date the run's own day instead of the day before.
    schedule=CronDataIntervalTimetable("0 1 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),  # the first day to refresh
    catchup=True,
    max_active_runs=1,
    default_args={
        "retries": 3,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
    },
    tags=["shop-analytics"],
):
    # A non-zero exit (a day failed) fails the task, so the retries above apply.
    BashOperator(
        task_id="refresh",
        # The binary is the Airflow Variable SHOP_ANALYTICS_BIN, else the worker's environment
        # variable of that name (expanded by bash), else `shop-analytics` on the PATH.
        bash_command=(
            "\"{{ var.value.get('SHOP_ANALYTICS_BIN', '${SHOP_ANALYTICS_BIN:-shop-analytics}') }}\""
            " refresh --date {{ ds }}"
        ),
        env=ENV,
        append_env=True,
    )
