//! Decoding of PostgreSQL's binary COPY format straight into Arrow arrays.
//!
//! `COPY (SELECT …) TO STDOUT (FORMAT binary)` is the fastest way out of PostgreSQL: no per-row
//! protocol messages beyond one CopyData, no text formatting on the server. The format
//! (<https://www.postgresql.org/docs/15/sql-copy.html>, "Binary Format") is a fixed header, then
//! per row an `int16` field count followed by `int32` length + bytes per field (`-1` for NULL),
//! and an `int16 -1` trailer. Field bytes are each type's `*send` representation.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;
use bytes::{Buf, BytesMut};

use super::Error;
use super::types::{PgKind, PgTable};

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// What [`CopyDecoder::complete_row_len`] returns for the trailer (a field count of -1); no row
/// of a table with columns is this short.
const TRAILER: usize = 2;
/// Microseconds from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
/// 0001-01-01 and 9999-12-31 in days since 1970-01-01: the dates Delta Lake holds.
const DELTA_FIRST_DAY: i32 = -719_162;
const DELTA_LAST_DAY: i32 = 2_932_896;
/// 0001-01-01T00:00:00 and 9999-12-31T23:59:59.999999 in µs since 1970-01-01.
const DELTA_FIRST_MICROS: i64 = -62_135_596_800_000_000;
const DELTA_LAST_MICROS: i64 = 253_402_300_799_999_999;

/// Turns the bytes of a binary COPY into record batches of at most `batch_rows` rows.
pub struct CopyDecoder {
    table: String,
    kinds: Vec<PgKind>,
    names: Vec<String>,
    declared: Vec<String>,
    schema: SchemaRef,
    builders: Vec<Builder>,
    batch_rows: usize,
    buffer: BytesMut,
    header_seen: bool,
    trailer_seen: bool,
    /// Rows decoded so far, for error messages.
    rows: u64,
    /// Field bytes in the batch being built: batches are also cut by size, so that wide text or
    /// bytea values neither overflow Arrow's 32-bit offsets nor hold much memory.
    batch_bytes: usize,
}

/// Field bytes after which a batch is cut, whatever its row count.
const BATCH_BYTES: usize = 64 << 20;

impl CopyDecoder {
    pub fn new(table: &PgTable, batch_rows: usize) -> Self {
        let schema = table.arrow_schema();
        let batch_rows = batch_rows.max(1);
        Self {
            table: table.name.clone(),
            kinds: table.columns.iter().map(|c| c.kind).collect(),
            names: table.columns.iter().map(|c| c.name.clone()).collect(),
            declared: table.columns.iter().map(|c| c.declared.clone()).collect(),
            builders: table
                .columns
                .iter()
                .map(|c| Builder::new(c.kind, batch_rows))
                .collect(),
            schema,
            batch_rows,
            buffer: BytesMut::with_capacity(1 << 16),
            header_seen: false,
            trailer_seen: false,
            rows: 0,
            batch_bytes: 0,
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Adds bytes from the server and returns the batches completed by them.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<RecordBatch>, Error> {
        if self.kinds.is_empty() {
            return Err(self.protocol("the table has no columns to export"));
        }
        self.buffer.extend_from_slice(chunk);
        let mut done = Vec::new();
        if !self.header_seen && !self.read_header()? {
            return Ok(done);
        }
        while !self.trailer_seen {
            let Some(row_len) = self.complete_row_len()? else {
                break;
            };
            if row_len == TRAILER {
                self.buffer.advance(2);
                self.trailer_seen = true;
                break;
            }
            let row = self.buffer.split_to(row_len).freeze();
            self.decode_row(&row[2..])?;
            self.batch_bytes += row_len;
            if self.builders[0].len() >= self.batch_rows || self.batch_bytes >= BATCH_BYTES {
                done.push(self.take_batch()?);
            }
        }
        Ok(done)
    }

    /// Ends the stream: the last partial batch, after checking that the data was complete.
    pub fn finish(mut self) -> Result<Option<RecordBatch>, Error> {
        if !self.trailer_seen || !self.buffer.is_empty() {
            return Err(self.protocol("the COPY data ended before its trailer"));
        }
        if self.builders.first().is_some_and(|b| b.len() > 0) {
            return self.take_batch().map(Some);
        }
        Ok(None)
    }

    /// Rows decoded so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn read_header(&mut self) -> Result<bool, Error> {
        if self.buffer.len() < SIGNATURE.len() + 8 {
            return Ok(false);
        }
        if &self.buffer[..SIGNATURE.len()] != SIGNATURE {
            return Err(self.protocol("the COPY data does not start with the binary signature"));
        }
        let extension = i32::from_be_bytes(self.buffer[15..19].try_into().expect("4 bytes"));
        let extension = usize::try_from(extension)
            .map_err(|_| self.protocol("negative header extension length"))?;
        if self.buffer.len() < 19 + extension {
            return Ok(false);
        }
        self.buffer.advance(19 + extension);
        self.header_seen = true;
        Ok(true)
    }

    /// The length of the next row (or of the trailer) if all of it is buffered.
    fn complete_row_len(&self) -> Result<Option<usize>, Error> {
        let b = &self.buffer[..];
        if b.len() < 2 {
            return Ok(None);
        }
        let fields = i16::from_be_bytes([b[0], b[1]]);
        if fields == -1 {
            return Ok(Some(TRAILER));
        }
        if fields as usize != self.kinds.len() {
            return Err(self.protocol(&format!(
                "a row has {fields} fields, the table {} columns",
                self.kinds.len()
            )));
        }
        let mut at = 2;
        for _ in 0..fields {
            if b.len() < at + 4 {
                return Ok(None);
            }
            let len = i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"));
            at += 4;
            if len > 0 {
                at += len as usize;
            } else if len < -1 {
                return Err(self.protocol("a negative field length"));
            }
        }
        Ok((b.len() >= at).then_some(at))
    }

    fn decode_row(&mut self, mut row: &[u8]) -> Result<(), Error> {
        for i in 0..self.kinds.len() {
            let len = row.get_i32();
            if len == -1 {
                self.builders[i].append_null();
                continue;
            }
            let (value, rest) = row.split_at(len as usize);
            row = rest;
            if let Err(reason) = self.builders[i].append(self.kinds[i], value) {
                return Err(Error::Value {
                    table: self.table.clone(),
                    column: self.names[i].clone(),
                    declared: self.declared[i].clone(),
                    row: self.rows + 1,
                    reason,
                });
            }
        }
        self.rows += 1;
        Ok(())
    }

    fn take_batch(&mut self) -> Result<RecordBatch, Error> {
        self.batch_bytes = 0;
        let columns: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        RecordBatch::try_new(Arc::clone(&self.schema), columns).map_err(|e| Error::Arrow {
            table: self.table.clone(),
            cause: e,
        })
    }

    fn protocol(&self, what: &str) -> Error {
        Error::Protocol {
            table: self.table.clone(),
            reason: what.to_string(),
        }
    }
}

enum Builder {
    Bool(BooleanBuilder),
    Int2(Int16Builder),
    Int4(Int32Builder),
    Int8(Int64Builder),
    Float4(Float32Builder),
    Float8(Float64Builder),
    Decimal(Decimal128Builder, i8, i128),
    Text(StringBuilder),
    Binary(BinaryBuilder),
    Date(Date32Builder),
    /// `HH:MM:SS.ffffff`: Delta Lake has no time-of-day type.
    Time(StringBuilder),
    Timestamp(TimestampMicrosecondBuilder),
}

fn fixed<const N: usize>(value: &[u8]) -> Result<[u8; N], String> {
    value
        .try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", value.len()))
}

fn utf8(value: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(value).map_err(|e| format!("invalid UTF-8: {e}"))
}

impl Builder {
    fn new(kind: PgKind, capacity: usize) -> Self {
        match kind {
            PgKind::Bool => Self::Bool(BooleanBuilder::with_capacity(capacity)),
            PgKind::Int2 => Self::Int2(Int16Builder::with_capacity(capacity)),
            PgKind::Int4 => Self::Int4(Int32Builder::with_capacity(capacity)),
            PgKind::Int8 => Self::Int8(Int64Builder::with_capacity(capacity)),
            PgKind::Float4 => Self::Float4(Float32Builder::with_capacity(capacity)),
            PgKind::Float8 => Self::Float8(Float64Builder::with_capacity(capacity)),
            PgKind::Numeric { precision, scale } => Self::Decimal(
                Decimal128Builder::with_capacity(capacity)
                    .with_precision_and_scale(precision, scale)
                    .expect("precision and scale were validated"),
                scale,
                10_i128.pow(u32::from(precision)),
            ),
            PgKind::Text | PgKind::Uuid | PgKind::Json | PgKind::Jsonb => {
                Self::Text(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            PgKind::Bytea => Self::Binary(BinaryBuilder::with_capacity(capacity, capacity * 16)),
            PgKind::Date => Self::Date(Date32Builder::with_capacity(capacity)),
            PgKind::Time => Self::Time(StringBuilder::with_capacity(capacity, capacity * 15)),
            PgKind::Timestamp => {
                Self::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity))
            }
            PgKind::TimestampTz => Self::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            ),
        }
    }

    fn append(&mut self, kind: PgKind, value: &[u8]) -> Result<(), String> {
        match self {
            Self::Bool(b) => b.append_value(fixed::<1>(value)?[0] != 0),
            Self::Int2(b) => b.append_value(i16::from_be_bytes(fixed(value)?)),
            Self::Int4(b) => b.append_value(i32::from_be_bytes(fixed(value)?)),
            Self::Int8(b) => b.append_value(i64::from_be_bytes(fixed(value)?)),
            Self::Float4(b) => b.append_value(f32::from_be_bytes(fixed(value)?)),
            Self::Float8(b) => b.append_value(f64::from_be_bytes(fixed(value)?)),
            Self::Decimal(b, scale, limit) => {
                let v = decode_numeric(value, *scale)?;
                if v.abs() >= *limit {
                    return Err(format!(
                        "{} does not fit the column's precision",
                        format_decimal(v, *scale)
                    ));
                }
                b.append_value(v);
            }
            Self::Text(b) => match kind {
                PgKind::Uuid => {
                    let uuid = uuid::Uuid::from_bytes(fixed(value)?);
                    b.append_value(
                        uuid.hyphenated()
                            .encode_lower(&mut uuid::Uuid::encode_buffer()),
                    );
                }
                PgKind::Jsonb => match value.split_first() {
                    Some((1, json)) => b.append_value(utf8(json)?),
                    _ => return Err("unknown jsonb binary version".into()),
                },
                _ => b.append_value(utf8(value)?),
            },
            Self::Binary(b) => b.append_value(value),
            Self::Date(b) => {
                let days = i32::from_be_bytes(fixed(value)?);
                // ±infinity become Delta Lake's last and first day; other days must lie in them.
                let days = match days {
                    i32::MAX => DELTA_LAST_DAY,
                    i32::MIN => DELTA_FIRST_DAY,
                    d => d
                        .checked_add(PG_EPOCH_DAYS)
                        .filter(|d| (DELTA_FIRST_DAY..=DELTA_LAST_DAY).contains(d))
                        .ok_or_else(|| {
                            format!("date {d} days after 2000-01-01 is outside the years 1 to 9999 that Delta Lake holds")
                        })?,
                };
                b.append_value(days);
            }
            Self::Time(b) => {
                let micros = i64::from_be_bytes(fixed(value)?);
                // 24:00:00 included, as PostgreSQL has it.
                if !(0..=86_400_000_000).contains(&micros) {
                    return Err(format!(
                        "time {micros} µs after midnight is not a time of day"
                    ));
                }
                b.append_value(format!(
                    "{:02}:{:02}:{:02}.{:06}",
                    micros / 3_600_000_000,
                    micros / 60_000_000 % 60,
                    micros / 1_000_000 % 60,
                    micros % 1_000_000
                ));
            }
            Self::Timestamp(b) => {
                let micros = i64::from_be_bytes(fixed(value)?);
                // ±infinity become Delta Lake's last and first instant; others must lie in them.
                let micros = match micros {
                    i64::MAX => DELTA_LAST_MICROS,
                    i64::MIN => DELTA_FIRST_MICROS,
                    m => m
                        .checked_add(PG_EPOCH_MICROS)
                        .filter(|m| (DELTA_FIRST_MICROS..=DELTA_LAST_MICROS).contains(m))
                        .ok_or_else(|| {
                            format!("timestamp {m} µs after 2000-01-01 is outside the years 1 to 9999 that Delta Lake holds")
                        })?,
                };
                b.append_value(micros);
            }
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match self {
            Self::Bool(b) => b.append_null(),
            Self::Int2(b) => b.append_null(),
            Self::Int4(b) => b.append_null(),
            Self::Int8(b) => b.append_null(),
            Self::Float4(b) => b.append_null(),
            Self::Float8(b) => b.append_null(),
            Self::Decimal(b, ..) => b.append_null(),
            Self::Text(b) => b.append_null(),
            Self::Binary(b) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Time(b) => b.append_null(),
            Self::Timestamp(b) => b.append_null(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Bool(b) => b.len(),
            Self::Int2(b) => b.len(),
            Self::Int4(b) => b.len(),
            Self::Int8(b) => b.len(),
            Self::Float4(b) => b.len(),
            Self::Float8(b) => b.len(),
            Self::Decimal(b, ..) => b.len(),
            Self::Text(b) => b.len(),
            Self::Binary(b) => b.len(),
            Self::Date(b) => b.len(),
            Self::Time(b) => b.len(),
            Self::Timestamp(b) => b.len(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Int2(b) => Arc::new(b.finish()),
            Self::Int4(b) => Arc::new(b.finish()),
            Self::Int8(b) => Arc::new(b.finish()),
            Self::Float4(b) => Arc::new(b.finish()),
            Self::Float8(b) => Arc::new(b.finish()),
            Self::Decimal(b, ..) => Arc::new(b.finish()),
            Self::Text(b) => Arc::new(b.finish()),
            Self::Binary(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Time(b) => Arc::new(b.finish()),
            Self::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

/// Decodes `numeric_send` output into an integer of `scale` decimal places.
///
/// The format: `int16 ndigits, int16 weight, uint16 sign, int16 dscale`, then `ndigits` base-10000
/// digits, the first worth `10000^weight`.
pub fn decode_numeric(value: &[u8], scale: i8) -> Result<i128, String> {
    if value.len() < 8 {
        return Err("truncated numeric".into());
    }
    let mut b = value;
    let ndigits = b.get_i16();
    let weight = i32::from(b.get_i16());
    let sign = b.get_u16();
    let _dscale = b.get_i16();
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Err("NaN has no decimal representation".into()),
        0xD000 | 0xF000 => return Err("infinity has no decimal representation".into()),
        other => return Err(format!("unknown numeric sign {other:#x}")),
    }
    if ndigits < 0 || b.len() != ndigits as usize * 2 {
        return Err("numeric digit count does not match its length".into());
    }
    let overflow = || "the value has more than 38 digits".to_string();
    let mut acc: i128 = 0;
    for i in 0..ndigits as i32 {
        let digit = i128::from(b.get_i16());
        // Decimal exponent of this digit once scaled: 4 * (weight - i) + scale.
        let exponent = 4 * (weight - i) + i32::from(scale);
        let term = if exponent >= 0 {
            10_i128
                .checked_pow(exponent as u32)
                .and_then(|p| digit.checked_mul(p))
                .ok_or_else(overflow)?
        } else {
            let divisor = 10_i128.checked_pow((-exponent) as u32).unwrap_or(i128::MAX);
            if digit % divisor != 0 {
                return Err(format!(
                    "the value has more than {scale} decimal places, the column's scale"
                ));
            }
            digit / divisor
        };
        acc = acc.checked_add(term).ok_or_else(overflow)?;
    }
    Ok(if sign == 0x4000 { -acc } else { acc })
}

/// `12345, 2` → `123.45`, for messages.
fn format_decimal(value: i128, scale: i8) -> String {
    let digits = value.unsigned_abs().to_string();
    let scale = scale.max(0) as usize;
    let sign = if value < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `numeric_send` of a value given as base-10000 digits.
    fn numeric(weight: i16, negative: bool, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(digits.len() as i16).to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&(if negative { 0x4000_u16 } else { 0 }).to_be_bytes());
        out.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out
    }

    #[test]
    fn numerics_decode_at_the_column_scale() {
        // 1234.5 = digits [1234, 5000], weight 0
        assert_eq!(
            decode_numeric(&numeric(0, false, 1, &[1234, 5000]), 2),
            Ok(123_450)
        );
        // -0.0001 = digits [1], weight -1
        assert_eq!(decode_numeric(&numeric(-1, true, 4, &[1]), 4), Ok(-1));
        // 12345678 = digits [1234, 5678], weight 1
        assert_eq!(
            decode_numeric(&numeric(1, false, 0, &[1234, 5678]), 0),
            Ok(12_345_678)
        );
        // 0
        assert_eq!(decode_numeric(&numeric(0, false, 0, &[]), 3), Ok(0));
        // 10^40 does not fit an i128 (the column's precision is checked when appending)
        assert!(
            decode_numeric(&numeric(10, false, 0, &[1]), 2)
                .unwrap_err()
                .contains("38 digits")
        );
        // 0.001 at scale 2 loses a digit: refused, not rounded
        assert!(
            decode_numeric(&numeric(-1, false, 3, &[10]), 2)
                .unwrap_err()
                .contains("decimal places")
        );
    }

    #[test]
    fn special_numerics_are_refused() {
        let mut nan = numeric(0, false, 0, &[]);
        nan[4..6].copy_from_slice(&0xC000_u16.to_be_bytes());
        assert!(decode_numeric(&nan, 2).unwrap_err().contains("NaN"));
    }

    #[test]
    fn decimals_format_for_messages() {
        assert_eq!(format_decimal(12_345, 2), "123.45");
        assert_eq!(format_decimal(-5, 3), "-0.005");
        assert_eq!(format_decimal(7, 0), "7");
    }
}
