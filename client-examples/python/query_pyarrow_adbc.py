"""Query the shop with the ADBC Flight SQL driver and get Arrow tables.

    python query_pyarrow_adbc.py [grpc://HOST:PORT]
"""

import pyarrow.compute as pc

from _connection import DAILY_SALES, TOP_CATEGORIES, connect, uri


def main() -> None:
    with connect() as conn, conn.cursor() as cur:
        print(f"Connected to {uri()}")

        # Catalog browsing: the columns of a table.
        schema = conn.adbc_get_table_schema(
            "purchases", catalog_filter="shop", db_schema_filter="stage"
        )
        print("\nshop.stage.purchases:")
        for field in schema:
            print(f"  {field.name:<14} {field.type}")

        # A parameterized query: `?` (or $1) placeholders are bound by the driver.
        cur.execute(TOP_CATEGORIES, (5,))
        top = cur.fetch_arrow_table()
        print("\nTop 5 categories by revenue:")
        for row in top.to_pylist():
            print(f"  {row['category']:<12} {row['orders']:>8} orders {row['revenue']:>14} EUR")

        cur.execute(DAILY_SALES)
        daily = cur.fetch_arrow_table()
        print(f"\nLast {daily.num_rows} days of analytics.daily_sales:")
        for row in daily.to_pylist():
            print(f"  {row['dt']}  {row['orders']:>6} orders  {row['revenue']:>12} EUR  {row['buyers']:>5} buyers")
        print(f"\nRevenue over these days: {pc.sum(daily['revenue']).as_py()}")

        # Large results stream batch by batch instead of being loaded at once.
        cur.execute("SELECT purchase_id, quantity, unit_price FROM shop.stage.purchases")
        rows = 0
        for batch in cur.fetch_record_batch():
            rows += batch.num_rows
        print(f"Streamed {rows} purchases.")


if __name__ == "__main__":
    main()
