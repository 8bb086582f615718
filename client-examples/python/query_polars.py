"""Query the shop into polars DataFrames.

    python query_polars.py [grpc://HOST:PORT]
"""

import polars as pl

from _connection import DAILY_SALES, TOP_CATEGORIES, connect, uri


def main() -> None:
    with connect() as conn:
        print(f"Connected to {uri()}")

        # polars.read_database takes the ADBC connection; parameters go in execute_options.
        top = pl.read_database(TOP_CATEGORIES, conn, execute_options={"parameters": (5,)})
        print("\nTop 5 categories by revenue:")
        print(top)

        daily = pl.read_database(DAILY_SALES, conn)
        print("\nLast 14 days, with a 7-day moving average of revenue:")
        print(
            daily.with_columns(
                pl.col("revenue").cast(pl.Float64).rolling_mean(7).round(2).alias("revenue_7d")
            )
        )

        # Or from an Arrow table fetched through the cursor.
        with conn.cursor() as cur:
            cur.execute(
                "SELECT c.country, p.category, pu.quantity * pu.unit_price AS amount "
                "FROM shop.stage.purchases pu "
                "JOIN shop.stage.customers c ON c.customer_id = pu.customer_id "
                "JOIN shop.stage.products p ON p.product_id = pu.product_id"
            )
            lines = pl.from_arrow(cur.fetch_arrow_table())
        pivot = (
            lines.group_by("country", "category")
            .agg(pl.col("amount").sum())
            .pivot(on="category", index="country", values="amount")
            .sort("country")
        )
        pivot = pivot.select("country", *sorted(c for c in pivot.columns if c != "country"))
        print("\nRevenue by customer country and category:")
        print(pivot)


if __name__ == "__main__":
    main()
