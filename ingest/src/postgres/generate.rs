//! `shop-analytics generate postgres`: deterministic customers and sellers in PostgreSQL.
//!
//! The same seed and counts give the same rows on every machine: every block of 10 000 rows draws
//! from its own ChaCha stream. Rows go in with `COPY … FROM STDIN (FORMAT csv)` inside one
//! transaction, so a failed run leaves the tables as they were.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use rand::Rng;
use sqlx::postgres::PgPool;
use sqlx::{Connection, Executor, PgConnection};

use super::{Error, Result, migrate};
use shop_demo::{ADJECTIVES, CITIES, COUNTRIES, FIRST_NAMES, LAST_NAMES, rng_for, weighted};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateSpec {
    pub customers: u64,
    pub sellers: u64,
    pub seed: u64,
    /// Empty the tables first; without it, tables that hold rows are an error.
    pub replace: bool,
}

/// Rows per COPY message and per random stream.
const BLOCK: u64 = 10_000;
/// Random streams: customers use `CUSTOMER_STREAM + block`, sellers `SELLER_STREAM + block`.
const CUSTOMER_STREAM: u64 = 1 << 32;
const SELLER_STREAM: u64 = 2 << 32;

/// Applies the migrations and fills `customers` and `sellers`; `progress` counts rows.
pub async fn generate(pool: &PgPool, spec: &GenerateSpec, progress: &AtomicU64) -> Result<()> {
    migrate(pool).await?;
    let mut conn = pool
        .acquire()
        .await
        .map_err(|cause| Error::Generate { cause })?;
    let mut tx = conn
        .begin()
        .await
        .map_err(|cause| Error::Generate { cause })?;
    for table in ["customers", "sellers"] {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await
            .map_err(|cause| Error::Generate { cause })?;
        if rows > 0 && !spec.replace {
            return Err(Error::Invalid(format!(
                "{table} already holds {rows} rows; pass --replace to empty it first"
            )));
        }
    }
    tx.execute("TRUNCATE customers, sellers")
        .await
        .map_err(|cause| Error::Generate { cause })?;
    copy_rows(
        &mut tx,
        "COPY customers (customer_id, name, email, phone, city, country, birth_date, \
         loyalty_points, lifetime_value, is_active, marketing_opt_in, created_at, updated_at) \
         FROM STDIN (FORMAT csv)",
        spec.customers,
        |block, out| customers_block(spec.seed, block, spec.customers, out),
        progress,
    )
    .await?;
    copy_rows(
        &mut tx,
        "COPY sellers (seller_id, name, email, city, country, rating, commission_rate, \
         is_verified, created_at, updated_at) FROM STDIN (FORMAT csv)",
        spec.sellers,
        |block, out| sellers_block(spec.seed, block, spec.sellers, out),
        progress,
    )
    .await?;
    // New rows from the application (the seller API) continue after the generated ids.
    for (table, key) in [("customers", "customer_id"), ("sellers", "seller_id")] {
        tx.execute(
            format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{key}'), \
                 GREATEST((SELECT max({key}) FROM {table}), 1))"
            )
            .as_str(),
        )
        .await
        .map_err(|cause| Error::Generate { cause })?;
    }
    tx.commit()
        .await
        .map_err(|cause| Error::Generate { cause })?;
    Ok(())
}

async fn copy_rows(
    conn: &mut PgConnection,
    statement: &str,
    rows: u64,
    block_csv: impl Fn(u64, &mut String),
    progress: &AtomicU64,
) -> Result<()> {
    let mut copy = conn
        .copy_in_raw(statement)
        .await
        .map_err(|cause| Error::Generate { cause })?;
    let mut csv = String::new();
    for block in 0..rows.div_ceil(BLOCK) {
        csv.clear();
        block_csv(block, &mut csv);
        if let Err(cause) = copy.send(csv.as_bytes()).await {
            copy.abort("generation failed").await.ok();
            return Err(Error::Generate { cause });
        }
        progress.fetch_add(BLOCK.min(rows - block * BLOCK), Ordering::Relaxed);
    }
    copy.finish()
        .await
        .map_err(|cause| Error::Generate { cause })?;
    Ok(())
}

/// A CSV text field: always quoted, so that an empty string differs from NULL.
fn text(out: &mut String, value: &str) {
    out.push('"');
    out.push_str(&value.replace('"', "\"\""));
    out.push('"');
}

fn timestamp(out: &mut String, ts: DateTime<Utc>) {
    write!(out, "{}", ts.format("%Y-%m-%d %H:%M:%S%.6f+00")).expect("writing to a String");
}

fn between(rng: &mut impl Rng, start: DateTime<Utc>, end: DateTime<Utc>) -> DateTime<Utc> {
    start + Duration::microseconds(rng.random_range(0..(end - start).num_microseconds().unwrap()))
}

fn period() -> (DateTime<Utc>, DateTime<Utc>) {
    (
        Utc.with_ymd_and_hms(2023, 1, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 9, 30, 0, 0, 0).unwrap(),
    )
}

fn email_local(first: &str, last: &str) -> String {
    format!("{first}.{last}")
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '.')
        .collect()
}

fn customers_block(seed: u64, block: u64, total: u64, out: &mut String) {
    let mut rng = rng_for(seed, CUSTOMER_STREAM + block);
    let (start, end) = period();
    for id in block * BLOCK + 1..=((block + 1) * BLOCK).min(total) {
        let first = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
        let last = LAST_NAMES[rng.random_range(0..LAST_NAMES.len())];
        let (country_idx, country) = weighted(&mut rng, &COUNTRIES);
        let cities = CITIES[country_idx];
        write!(out, "{id},").unwrap();
        text(out, &format!("{first} {last}"));
        out.push(',');
        if !rng.random_bool(0.05) {
            text(
                out,
                &format!("{}{id}@example.com", email_local(first, last)),
            );
        }
        out.push(',');
        if !rng.random_bool(0.2) {
            let phone = format!(
                "+{} {:03} {:07}",
                30 + country_idx,
                rng.random_range(10..999),
                rng.random_range(0..10_000_000)
            );
            text(out, &phone);
        }
        out.push(',');
        if !rng.random_bool(0.03) {
            text(out, cities[rng.random_range(0..cities.len())]);
        }
        out.push(',');
        text(out, country);
        out.push(',');
        if !rng.random_bool(0.1) {
            let birth = NaiveDate::from_ymd_opt(1940, 1, 1).unwrap()
                + Duration::days(rng.random_range(0..24_500));
            write!(out, "{birth}").unwrap();
        }
        let value_cents: i64 = if rng.random_bool(0.1) {
            0
        } else {
            // Most customers spend little, a few a lot.
            (rng.random_range(0.0_f64..1.0).powi(4) * 5_000_000.0) as i64
        };
        write!(
            out,
            ",{},{}.{:02},{},",
            rng.random_range(0..5_000),
            value_cents / 100,
            value_cents % 100,
            !rng.random_bool(0.04)
        )
        .unwrap();
        if !rng.random_bool(0.3) {
            write!(out, "{}", rng.random_bool(0.4)).unwrap();
        }
        out.push(',');
        let created = between(&mut rng, start, end - Duration::days(1));
        timestamp(out, created);
        out.push(',');
        timestamp(out, between(&mut rng, created, end));
        out.push('\n');
    }
}

fn sellers_block(seed: u64, block: u64, total: u64, out: &mut String) {
    let mut rng = rng_for(seed, SELLER_STREAM + block);
    let (start, end) = period();
    for id in block * BLOCK + 1..=((block + 1) * BLOCK).min(total) {
        let adjective = ADJECTIVES[rng.random_range(0..ADJECTIVES.len())];
        let last = LAST_NAMES[rng.random_range(0..LAST_NAMES.len())];
        let (country_idx, country) = weighted(&mut rng, &COUNTRIES);
        let cities = CITIES[country_idx];
        write!(out, "{id},").unwrap();
        text(out, &format!("{adjective} {last} #{id}"));
        out.push(',');
        if !rng.random_bool(0.02) {
            text(out, &format!("shop{id}@sellers.example.com"));
        }
        out.push(',');
        text(out, cities[rng.random_range(0..cities.len())]);
        out.push(',');
        text(out, country);
        out.push(',');
        if !rng.random_bool(0.1) {
            let rating = rng.random_range(250..=500);
            write!(out, "{}.{:02}", rating / 100, rating % 100).unwrap();
        }
        let commission = rng.random_range(500..=2_500);
        write!(out, ",0.{commission:04},{},", rng.random_bool(0.7)).unwrap();
        let created = between(&mut rng, start, end - Duration::days(1));
        timestamp(out, created);
        out.push(',');
        timestamp(out, between(&mut rng, created, end));
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_deterministic_and_well_formed() {
        let mut a = String::new();
        let mut b = String::new();
        customers_block(7, 0, 25, &mut a);
        customers_block(7, 0, 25, &mut b);
        assert_eq!(a, b);
        assert_eq!(a.lines().count(), 25);
        let mut other = String::new();
        customers_block(8, 0, 25, &mut other);
        assert_ne!(a, other);
        // 13 columns: quoted fields hold no commas, so counting separators is exact.
        for line in a.lines() {
            assert_eq!(line.matches(',').count(), 12, "{line}");
        }
        let mut sellers = String::new();
        sellers_block(7, 1, 10_005, &mut sellers);
        assert_eq!(sellers.lines().count(), 5);
        assert!(sellers.starts_with("10001,"), "{sellers}");
    }
}
