"""Query the shop into pandas DataFrames.

    python query_pandas.py [grpc://HOST:PORT]
"""

import warnings

import pandas as pd

from _connection import DAILY_SALES, TOP_CATEGORIES, connect, uri


def main() -> None:
    with connect() as conn:
        print(f"Connected to {uri()}")

        # A cursor runs parameterized queries; fetch_df() converts the Arrow result to pandas.
        with conn.cursor() as cur:
            cur.execute(TOP_CATEGORIES, (5,))
            top = cur.fetch_df()
        print("\nTop 5 categories by revenue:")
        print(top.to_string(index=False))

        # pandas.read_sql understands ADBC connections directly (without `params`: pandas
        # does not pass parameters to ADBC drivers; use a cursor for those).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            daily = pd.read_sql(DAILY_SALES, conn)
        # Decimals arrive as decimal.Decimal objects; convert for numeric work.
        daily["revenue"] = daily["revenue"].astype(float)
        daily["revenue_per_order"] = (daily["revenue"] / daily["orders"]).round(2)
        print("\nLast 14 days:")
        print(daily.to_string(index=False))


if __name__ == "__main__":
    main()
