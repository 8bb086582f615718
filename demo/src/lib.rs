//! A deterministic demo shop written into the stage layer.
//!
//! The same seed and scale give the same rows, byte for byte, on every machine: every table and
//! every day of purchases draws from its own ChaCha stream derived from the seed. The data has the
//! skew of a real shop: a few customers and products account for most purchases (Zipf), weekends
//! sell more than weekdays, volume grows over the period, most baskets hold one unit, and some
//! purchases carry a discount.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Zipf};
use shop_lake::delta::{CommitInfo, Mode};
use shop_lake::snapshot::SnapshotWriter;
use shop_lake::{Lake, layout};
use shop_types::purchases::{DAY_COLUMN, with_day};

use shop_types::Table;
use shop_types::tables::{CUSTOMERS, PRODUCTS, PURCHASES, SELLERS};

/// Errors of the demo generator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid demo settings: {0}")]
    Settings(String),
    #[error(transparent)]
    Lake(#[from] shop_lake::Error),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Sizes and dates of the demo shop.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoSpec {
    pub seed: u64,
    pub customers: usize,
    pub sellers: usize,
    pub products: usize,
    /// Purchases over the whole period (the real count varies by a fraction of a percent).
    pub purchases: usize,
    /// Last day with purchases.
    pub last_day: NaiveDate,
    pub days: u32,
}

/// Default sizes at scale 1.
pub const BASE_CUSTOMERS: usize = 10_000;
pub const BASE_SELLERS: usize = 500;
pub const BASE_PRODUCTS: usize = 5_000;
pub const BASE_PURCHASES: usize = 1_050_000;
/// Fixed so that the demo is reproducible: the 90 days before 2026-10-01.
pub fn default_last_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 9, 30).expect("valid date")
}

impl DemoSpec {
    /// The default shop multiplied by `scale` (1.0 ≈ 10k customers, 500 sellers, 5k products,
    /// 1.05M purchases over 90 days).
    pub fn scaled(scale: f64) -> Result<Self> {
        if !(scale.is_finite() && scale > 0.0 && scale <= 1000.0) {
            return Err(Error::Settings(format!(
                "scale must be a number above 0 and at most 1000, got {scale}"
            )));
        }
        let n = |base: usize| ((base as f64 * scale).round() as usize).max(1);
        Ok(Self {
            seed: 42,
            customers: n(BASE_CUSTOMERS),
            sellers: n(BASE_SELLERS),
            products: n(BASE_PRODUCTS),
            purchases: n(BASE_PURCHASES),
            last_day: default_last_day(),
            days: 90,
        })
    }

    pub fn first_day(&self) -> NaiveDate {
        self.last_day - Duration::days(i64::from(self.days) - 1)
    }
}

/// What was generated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoSummary {
    pub rows: BTreeMap<String, u64>,
}

pub const COUNTRIES: [(&str, u32); 8] = [
    ("DE", 30),
    ("FR", 18),
    ("GB", 15),
    ("NL", 10),
    ("ES", 9),
    ("IT", 8),
    ("PL", 6),
    ("SE", 4),
];
pub const CITIES: [&[&str]; 8] = [
    &["Berlin", "Hamburg", "München", "Köln"],
    &["Paris", "Lyon", "Marseille"],
    &["London", "Manchester", "Edinburgh"],
    &["Amsterdam", "Rotterdam", "Utrecht"],
    &["Madrid", "Barcelona", "Sevilla"],
    &["Roma", "Milano", "Napoli"],
    &["Warszawa", "Kraków", "Gdańsk"],
    &["Stockholm", "Göteborg", "Malmö"],
];
pub const FIRST_NAMES: [&str; 16] = [
    "Anna", "Ben", "Chloé", "David", "Elif", "Finn", "Greta", "Hugo", "Ines", "Jonas", "Klara",
    "Luca", "Maja", "Noah", "Olga", "Zoë",
];
pub const LAST_NAMES: [&str; 16] = [
    "Müller",
    "Schmidt",
    "Dubois",
    "Smith",
    "García",
    "Rossi",
    "Nowak",
    "Jansen",
    "Andersson",
    "Martin",
    "Bernard",
    "Jones",
    "López",
    "Bianchi",
    "Kowalski",
    "de Vries",
];
/// Category, weight, median price in euros.
const CATEGORIES: [(&str, u32, f64); 10] = [
    ("electronics", 14, 180.0),
    ("books", 16, 14.0),
    ("clothing", 15, 35.0),
    ("home", 12, 45.0),
    ("toys", 8, 25.0),
    ("sports", 8, 55.0),
    ("beauty", 9, 18.0),
    ("grocery", 10, 6.0),
    ("garden", 5, 40.0),
    ("automotive", 3, 70.0),
];
pub const ADJECTIVES: [&str; 8] = [
    "Classic", "Smart", "Compact", "Deluxe", "Eco", "Pro", "Mini", "Ultra",
];

pub fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

pub fn weighted<'a, T>(rng: &mut impl Rng, items: &'a [(T, u32)]) -> (usize, &'a T) {
    let total: u32 = items.iter().map(|(_, w)| *w).sum();
    let mut pick = rng.random_range(0..total);
    for (i, (item, w)) in items.iter().enumerate() {
        if pick < *w {
            return (i, item);
        }
        pick -= *w;
    }
    unreachable!("pick is below the total weight")
}

fn micros(ts: DateTime<Utc>) -> i64 {
    ts.timestamp_micros()
}

fn decimal(values: Vec<i128>, precision: u8, scale: i8) -> Result<ArrayRef> {
    Ok(Arc::new(
        Decimal128Array::from(values).with_precision_and_scale(precision, scale)?,
    ))
}

fn nullable_decimal(values: Vec<Option<i128>>, precision: u8, scale: i8) -> Result<ArrayRef> {
    Ok(Arc::new(
        Decimal128Array::from(values).with_precision_and_scale(precision, scale)?,
    ))
}

fn timestamps(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
}

/// The customers table.
pub fn customers(spec: &DemoSpec) -> Result<RecordBatch> {
    let mut rng = rng_for(spec.seed, 1);
    let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let span = (spec.first_day().and_hms_opt(0, 0, 0).unwrap().and_utc() - start).num_seconds();
    let n = spec.customers;
    let (mut ids, mut names, mut emails, mut cities, mut countries) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut active, mut created, mut updated) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for i in 0..n {
        let id = i as i64 + 1;
        let first = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
        let last = LAST_NAMES[rng.random_range(0..LAST_NAMES.len())];
        let (country_idx, country) = weighted(&mut rng, &COUNTRIES);
        let city_list = CITIES[country_idx];
        let city =
            (!rng.random_bool(0.03)).then(|| city_list[rng.random_range(0..city_list.len())]);
        let email = (!rng.random_bool(0.05)).then(|| {
            let local: String = format!("{first}.{last}")
                .to_lowercase()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect();
            format!("{local}{id}@example.com")
        });
        let created_at = start + Duration::seconds(rng.random_range(0..span));
        let updated_at = created_at + Duration::seconds(rng.random_range(0..30 * 86_400));
        ids.push(id);
        names.push(format!("{first} {last}"));
        emails.push(email);
        cities.push(city);
        countries.push(*country);
        active.push(!rng.random_bool(0.04));
        created.push(micros(created_at));
        updated.push(micros(updated_at));
    }
    Ok(RecordBatch::try_new(
        CUSTOMERS.schema_ref(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(emails)),
            Arc::new(StringArray::from(cities)),
            Arc::new(StringArray::from(countries)),
            Arc::new(BooleanArray::from(active)),
            timestamps(created),
            timestamps(updated),
        ],
    )?)
}

/// The sellers table.
pub fn sellers(spec: &DemoSpec) -> Result<RecordBatch> {
    let mut rng = rng_for(spec.seed, 2);
    let start = Utc.with_ymd_and_hms(2023, 1, 1, 0, 0, 0).unwrap();
    let n = spec.sellers;
    let mut ids = Vec::with_capacity(n);
    let mut names = Vec::with_capacity(n);
    let mut countries = Vec::with_capacity(n);
    let mut ratings = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    let mut updated = Vec::with_capacity(n);
    for i in 0..n {
        let id = i as i64 + 1;
        let (_, country) = weighted(&mut rng, &COUNTRIES);
        let adjective = ADJECTIVES[rng.random_range(0..ADJECTIVES.len())];
        let last = LAST_NAMES[rng.random_range(0..LAST_NAMES.len())];
        let rating = (!rng.random_bool(0.1)).then(|| rng.random_range(250..=500_i128));
        let created_at = start + Duration::seconds(rng.random_range(0..365 * 86_400));
        let updated_at = created_at + Duration::seconds(rng.random_range(0..300 * 86_400));
        ids.push(id);
        names.push(format!("{adjective} {last} #{id}"));
        countries.push(*country);
        ratings.push(rating);
        created.push(micros(created_at));
        updated.push(micros(updated_at));
    }
    Ok(RecordBatch::try_new(
        SELLERS.schema_ref(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(countries)),
            nullable_decimal(ratings, 3, 2)?,
            timestamps(created),
            timestamps(updated),
        ],
    )?)
}

/// The products table: (batch, seller of each product, price in cents of each product).
pub fn products(spec: &DemoSpec) -> Result<(RecordBatch, Vec<i64>, Vec<i128>)> {
    let mut rng = rng_for(spec.seed, 3);
    let start = Utc.with_ymd_and_hms(2023, 6, 1, 0, 0, 0).unwrap();
    // A few big sellers carry most of the catalogue.
    let seller_dist = Zipf::new(spec.sellers as f64, 1.1).expect("valid Zipf parameters");
    let weights: Vec<(&str, u32)> = CATEGORIES.iter().map(|(c, w, _)| (*c, *w)).collect();
    let n = spec.products;
    let (mut ids, mut sellers, mut names, mut categories, mut prices, mut created) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for i in 0..n {
        let id = i as i64 + 1;
        let seller = seller_dist.sample(&mut rng) as i64;
        let (cat_idx, category) = weighted(&mut rng, &weights);
        let median = CATEGORIES[cat_idx].2;
        let price = LogNormal::new(median.ln(), 0.6)
            .expect("valid log-normal parameters")
            .sample(&mut rng)
            .clamp(0.5, 5_000.0);
        let cents = (price * 100.0).round() as i128 - 1; // prices end in .x9
        let adjective = ADJECTIVES[rng.random_range(0..ADJECTIVES.len())];
        ids.push(id);
        sellers.push(seller);
        names.push(format!("{adjective} {category} item {id}"));
        categories.push(*category);
        prices.push(cents.max(9));
        created.push(micros(
            start + Duration::seconds(rng.random_range(0..365 * 86_400)),
        ));
    }
    let batch = RecordBatch::try_new(
        PRODUCTS.schema_ref(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(Int64Array::from(sellers.clone())),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(categories)),
            decimal(prices.clone(), 12, 2)?,
            timestamps(created),
        ],
    )?;
    Ok((batch, sellers, prices))
}

struct PurchaseRow {
    at: i64,
    id: [u8; 16],
    customer: i64,
    product: i64,
    seller: i64,
    quantity: i32,
    price: i128,
}

/// Purchases of one day.
pub fn purchases_of_day(
    spec: &DemoSpec,
    day: NaiveDate,
    product_sellers: &[i64],
    product_prices: &[i128],
) -> Result<RecordBatch> {
    let index = (day - spec.first_day()).num_days();
    if index < 0 || index >= i64::from(spec.days) {
        return Err(Error::Settings(format!("{day} is outside the demo period")));
    }
    let mut rng = rng_for(spec.seed, 1_000 + index as u64);
    // Growth of ~40% over the period, weekends +35%, ±10% noise; the mean stays near the target.
    let per_day = spec.purchases as f64 / f64::from(spec.days);
    let growth = 0.8 + 0.4 * index as f64 / f64::from(spec.days.max(2) - 1);
    let weekday = chrono::Datelike::weekday(&day).num_days_from_monday();
    let weekly = if weekday >= 5 { 1.25 } else { 0.9 };
    let noise = rng.random_range(0.9..1.1);
    let count = (per_day * growth * weekly * noise).round().max(1.0) as usize;

    let customer_dist = Zipf::new(spec.customers as f64, 0.9).expect("valid Zipf parameters");
    let product_dist = Zipf::new(product_prices.len() as f64, 1.05).expect("valid Zipf parameters");
    let midnight = day.and_hms_opt(0, 0, 0).expect("valid time").and_utc();
    let mut rows: Vec<PurchaseRow> = Vec::with_capacity(count);
    for _ in 0..count {
        let customer = customer_dist.sample(&mut rng) as i64;
        // Zipf rank → product id, scattered so that popular products are not simply ids 1, 2, 3.
        let rank = product_dist.sample(&mut rng) as usize - 1;
        let product_idx = (rank * 7_919) % product_prices.len();
        let quantity = match rng.random_range(0..100) {
            0..=79 => 1,
            80..=92 => 2,
            93..=97 => 3,
            _ => rng.random_range(4..=10),
        };
        let list = product_prices[product_idx];
        let price = if rng.random_bool(0.12) {
            list * i128::from(rng.random_range(70..95_i32)) / 100
        } else {
            list
        };
        // Activity peaks in the evening: two thirds of purchases between 17:00 and 23:00.
        let second = if rng.random_bool(0.66) {
            rng.random_range(17 * 3600..23 * 3600)
        } else {
            rng.random_range(0..86_400)
        };
        let at = micros(midnight + Duration::seconds(second)) + rng.random_range(0..1_000_000);
        let id: [u8; 16] = rng.random();
        rows.push(PurchaseRow {
            at,
            id,
            customer,
            product: product_idx as i64 + 1,
            seller: product_sellers[product_idx],
            quantity,
            price,
        });
    }
    rows.sort_by_key(|r| r.at);
    let ids: Vec<String> = rows
        .iter()
        .map(|r| {
            uuid::Builder::from_random_bytes(r.id)
                .into_uuid()
                .to_string()
        })
        .collect();
    Ok(RecordBatch::try_new(
        PURCHASES.schema_ref(),
        vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.customer),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.product))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.seller))),
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.quantity),
            )),
            decimal(rows.iter().map(|r| r.price).collect(), 12, 2)?,
            Arc::new(StringArray::from(vec!["EUR"; rows.len()])),
            timestamps(rows.iter().map(|r| r.at).collect()),
            Arc::new(StringArray::from(vec![None::<&str>; rows.len()])),
        ],
    )?)
}

/// Writes the whole demo shop into the stage layer of `lake`, reporting each finished step.
///
/// Snapshot tables are rewritten in one Delta commit each; each day of purchases replaces that
/// day of `stage.purchases` in one commit, so an interrupted run can simply be started again.
pub async fn generate(
    lake: &Lake,
    spec: &DemoSpec,
    mut progress: impl FnMut(&str, u64),
) -> Result<DemoSummary> {
    let mut summary = DemoSummary::default();
    let snapshot = async |table: &Table, batch: RecordBatch| -> Result<u64> {
        let rows = batch.num_rows() as u64;
        let writer = SnapshotWriter::begin(
            lake,
            table.schema,
            table.name,
            batch.schema(),
            None,
            BTreeMap::from([("source".to_string(), "demo".to_string())]),
        )
        .await?;
        writer.write(batch).await?;
        writer.commit().await?;
        Ok(rows)
    };
    let rows = snapshot(&CUSTOMERS, customers(spec)?).await?;
    summary.rows.insert(CUSTOMERS.name.into(), rows);
    progress(CUSTOMERS.name, rows);
    let rows = snapshot(&SELLERS, sellers(spec)?).await?;
    summary.rows.insert(SELLERS.name.into(), rows);
    progress(SELLERS.name, rows);
    let (products, product_sellers, prices) = products(spec)?;
    let rows = snapshot(&PRODUCTS, products).await?;
    summary.rows.insert(PRODUCTS.name.into(), rows);
    progress(PRODUCTS.name, rows);

    let mut total = 0;
    let mut day = spec.first_day();
    while day <= spec.last_day {
        let batch = purchases_of_day(spec, day, &product_sellers, &prices)?;
        let rows = batch.num_rows() as u64;
        // Replacing the day makes a run that was interrupted safe to start again.
        lake.write_delta(
            &layout::table_dir(PURCHASES.schema, PURCHASES.name),
            &[DAY_COLUMN],
            vec![with_day(&batch, day)],
            Mode::day(DAY_COLUMN, day),
            CommitInfo::default(),
        )
        .await?;
        total += rows;
        progress(PURCHASES.name, rows);
        day += Duration::days(1);
    }
    summary.rows.insert(PURCHASES.name.into(), total);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DemoSpec {
        DemoSpec::scaled(0.01).unwrap()
    }

    #[test]
    fn scale_is_validated() {
        assert!(DemoSpec::scaled(0.0).is_err());
        assert!(DemoSpec::scaled(f64::NAN).is_err());
        assert!(DemoSpec::scaled(-1.0).is_err());
        let s = DemoSpec::scaled(1.0).unwrap();
        assert_eq!((s.customers, s.sellers, s.products), (10_000, 500, 5_000));
        assert_eq!(s.first_day(), NaiveDate::from_ymd_opt(2026, 7, 3).unwrap());
    }

    #[test]
    fn generation_is_deterministic() {
        let s = spec();
        assert_eq!(customers(&s).unwrap(), customers(&s).unwrap());
        let (p1, sellers1, prices1) = products(&s).unwrap();
        let (p2, _, _) = products(&s).unwrap();
        assert_eq!(p1, p2);
        let day = s.first_day();
        assert_eq!(
            purchases_of_day(&s, day, &sellers1, &prices1).unwrap(),
            purchases_of_day(&s, day, &sellers1, &prices1).unwrap()
        );
        let other = DemoSpec {
            seed: 7,
            ..s.clone()
        };
        assert_ne!(customers(&s).unwrap(), customers(&other).unwrap());
    }

    #[test]
    fn purchases_are_skewed_and_consistent() {
        let s = DemoSpec::scaled(0.2).unwrap();
        let (_, sellers, prices) = products(&s).unwrap();
        let batch = purchases_of_day(&s, s.last_day, &sellers, &prices).unwrap();
        let customers = batch
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
        for c in customers.values() {
            assert!((1..=s.customers as i64).contains(c));
            *counts.entry(*c).or_default() += 1;
        }
        let mut sorted: Vec<usize> = counts.values().copied().collect();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let top_decile: usize = sorted.iter().take(sorted.len() / 10).sum();
        assert!(
            top_decile * 3 > batch.num_rows(),
            "the top 10% of buyers should make over a third of purchases ({top_decile} of {})",
            batch.num_rows()
        );
        // Every purchase's seller is the seller of its product.
        let products = batch
            .column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let purchase_sellers = batch
            .column(3)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        for (p, seller) in products.values().iter().zip(purchase_sellers.values()) {
            assert_eq!(sellers[*p as usize - 1], *seller);
        }
    }

    #[test]
    fn days_outside_the_period_are_refused() {
        let s = spec();
        let (_, sellers, prices) = products(&s).unwrap();
        let err =
            purchases_of_day(&s, s.last_day + Duration::days(1), &sellers, &prices).unwrap_err();
        assert!(err.to_string().contains("outside the demo period"));
    }
}
