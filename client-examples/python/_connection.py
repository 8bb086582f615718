"""Shared connection settings of the examples.

The server address comes from the first command-line argument, else SHOP_FLIGHT_URI, else
grpc://127.0.0.1:50051 (the default of `shop-analytics quickstart`). When the server has
authentication on (SHOP_AUTH_USERS), set SHOP_USER and SHOP_PASSWORD.
"""

import os
import sys

import adbc_driver_flightsql.dbapi as flightsql

DEFAULT_URI = "grpc://127.0.0.1:50051"

TOP_CATEGORIES = """
SELECT p.category,
       count(DISTINCT pu.purchase_id)    AS orders,
       sum(pu.quantity)                  AS units,
       sum(pu.quantity * pu.unit_price)  AS revenue
FROM shop.stage.purchases pu
JOIN shop.stage.products p ON p.product_id = pu.product_id
GROUP BY p.category
ORDER BY revenue DESC
LIMIT ?
"""

DAILY_SALES = """
SELECT dt, orders, units, revenue, buyers
FROM shop.analytics.daily_sales
WHERE dt > (SELECT max(dt) FROM shop.analytics.daily_sales) - INTERVAL '14 days'
ORDER BY dt
"""


def uri() -> str:
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.environ.get("SHOP_FLIGHT_URI", DEFAULT_URI)


def connect():
    """An ADBC DB-API connection to the shop's Flight SQL server."""
    db_kwargs = {}
    if os.environ.get("SHOP_USER"):
        db_kwargs["username"] = os.environ["SHOP_USER"]
        db_kwargs["password"] = os.environ.get("SHOP_PASSWORD", "")
    # autocommit=True: the server is read-only and has no transactions.
    return flightsql.connect(uri(), db_kwargs=db_kwargs, autocommit=True)
