//! Purchases read back from `stage.purchases`, with bound parameters.

use arrow::array::{Array, AsArray, Decimal128Array, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{Int32Type, Int64Type};
use datafusion::scalar::ScalarValue;
use tonic::Status;

use super::PurchaseApi;
use crate::pb::Purchase;
use crate::{Filter, collect, internal, timestamp};

impl PurchaseApi {
    pub(super) async fn query(
        &self,
        filter: Filter,
        limit: usize,
    ) -> Result<Vec<Purchase>, Status> {
        if !crate::table_exists(&self.ctx, "purchases").await? {
            return Ok(Vec::new());
        }
        let frame = filter
            .select(
                &self.ctx,
                "purchase_id, customer_id, product_id, seller_id, quantity, unit_price, \
                 currency, purchased_at, extras",
                "shop.stage.purchases",
                "purchased_at, purchase_id",
                limit,
            )
            .await
            .map_err(|e| internal("reading stage.purchases", e))?;
        let batches = collect(frame, &self.limits, "reading stage.purchases").await?;
        let mut purchases = Vec::new();
        for batch in &batches {
            purchases.extend(to_purchases(batch).map_err(Status::internal)?);
        }
        Ok(purchases)
    }
}

/// The purchase an event (as built by [`PurchaseApi`]) describes.
pub(super) fn from_event(payload: &[u8]) -> Result<Purchase, Status> {
    let p = shop_types::purchases::decode(payload, None)
        .map_err(|why| internal("reading a recorded purchase event", why))?;
    Ok(Purchase {
        purchase_id: p.purchase_id,
        customer_id: p.customer_id,
        product_id: p.product_id,
        seller_id: p.seller_id,
        quantity: p.quantity,
        unit_price: format!("{}.{:02}", p.unit_price / 100, p.unit_price % 100),
        currency: p.currency,
        purchased_at: Some(timestamp(p.purchased_at)),
        extras: extras(p.extras.as_deref())?,
    })
}

pub(super) fn extras(text: Option<&str>) -> Result<Option<pbjson_types::Struct>, Status> {
    text.map(|t| serde_json::from_str(t).map_err(|e| internal("reading extras", e)))
        .transpose()
}

pub(super) fn to_purchases(batch: &RecordBatch) -> Result<Vec<Purchase>, String> {
    let strings = |i: usize, name: &str| {
        batch
            .column(i)
            .as_string_opt::<i32>()
            .ok_or(format!("{name} is not a string"))
    };
    let ints = |i: usize, name: &str| {
        batch
            .column(i)
            .as_primitive_opt::<Int64Type>()
            .ok_or(format!("{name} is not an Int64"))
    };
    let ids = strings(0, "purchase_id")?;
    let customers = ints(1, "customer_id")?;
    let products = ints(2, "product_id")?;
    let sellers = ints(3, "seller_id")?;
    let quantities = batch
        .column(4)
        .as_primitive_opt::<Int32Type>()
        .ok_or("quantity is not an Int32")?;
    let prices = batch
        .column(5)
        .as_any()
        .downcast_ref::<Decimal128Array>()
        .ok_or("unit_price is not a decimal")?;
    let currencies = strings(6, "currency")?;
    let times = batch
        .column(7)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or("purchased_at is not a timestamp")?;
    let all_extras = strings(8, "extras")?;
    (0..batch.num_rows())
        .map(|i| {
            Ok(Purchase {
                purchase_id: ids.value(i).to_string(),
                customer_id: customers.value(i),
                product_id: products.value(i),
                seller_id: sellers.value(i),
                quantity: quantities.value(i),
                unit_price: prices.value_as_string(i),
                currency: currencies.value(i).to_string(),
                purchased_at: Some(timestamp(times.value(i))),
                extras: extras(all_extras.is_valid(i).then(|| all_extras.value(i)))
                    .map_err(|s| s.message().to_string())?,
            })
        })
        .collect()
}

/// The purchase with this id.
pub(super) fn by_id(id: &str) -> Filter {
    let mut filter = Filter::default();
    let p = filter.param(ScalarValue::Utf8(Some(id.to_string())));
    filter.and(format!("purchase_id = {p}"));
    filter
}

/// A time (µs since the epoch, UTC) as a parameter of the type of `purchased_at`.
pub(super) fn time_param(us: i64) -> ScalarValue {
    ScalarValue::TimestampMicrosecond(Some(us), Some("UTC".into()))
}

/// The day of a time as a parameter of the type of `dt` (days since the epoch).
pub(super) fn day_param(us: i64) -> ScalarValue {
    ScalarValue::Date32(Some(us.div_euclid(86_400_000_000) as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_parameters_have_the_lake_types() {
        assert_eq!(
            time_param(1_764_000_000_123_456),
            ScalarValue::TimestampMicrosecond(Some(1_764_000_000_123_456), Some("UTC".into()))
        );
        // 2025-11-24 is day 20,416 since the epoch; a time before 1970 falls on the day before.
        assert_eq!(
            day_param(1_764_000_000_123_456),
            ScalarValue::Date32(Some(20_416))
        );
        assert_eq!(day_param(-1), ScalarValue::Date32(Some(-1)));
    }
}
