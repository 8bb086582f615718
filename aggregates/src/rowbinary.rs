//! Arrow record batches as ClickHouse `RowBinary`, driven by the ClickHouse column types.
//!
//! `RowBinary` is the one binary insert format that every ClickHouse we support understands,
//! from Debian's 18.16 to current releases (18.16 has no Arrow, Parquet or
//! `RowBinaryWithNamesAndTypes` input). Each value is cast to the Arrow type that matches its
//! ClickHouse column with overflow checks, so a value that does not fit (a date before 1970, an
//! out-of-range decimal, a NULL in a non-Nullable column) is an error naming the column and row,
//! never a silently wrong number.

use std::fmt;

use arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, TimestampSecondArray, cast::as_string_array,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, TimeUnit, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};

/// A ClickHouse column type this encoder can write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChType {
    Int8,
    Int16,
    Int32,
    Int64,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    Float32,
    Float64,
    String,
    /// Days since 1970-01-01 as `u16`.
    Date,
    /// Seconds since the epoch as `u32`, whatever the time zone parameter says.
    DateTime,
    Decimal {
        precision: u8,
        scale: i8,
    },
    Nullable(Box<ChType>),
}

impl ChType {
    /// Parses a type as `system.columns` spells it, e.g. `Nullable(Decimal(18, 2))`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let inner = |prefix: &str| {
            text.strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(')'))
        };
        if let Some(inner) = inner("Nullable(") {
            return Ok(Self::Nullable(Box::new(Self::parse(inner)?)));
        }
        if let Some(inner) = inner("LowCardinality(") {
            // RowBinary writes LowCardinality(T) exactly like T.
            return Self::parse(inner);
        }
        if let Some(args) = inner("Decimal(") {
            let (p, s) = args
                .split_once(',')
                .ok_or_else(|| format!("unsupported ClickHouse type {text}"))?;
            let precision: u8 = p.trim().parse().map_err(|_| format!("bad type {text}"))?;
            let scale: i8 = s.trim().parse().map_err(|_| format!("bad type {text}"))?;
            if !(1..=38).contains(&precision) || scale < 0 || scale as u8 > precision {
                return Err(format!("unsupported ClickHouse type {text}"));
            }
            return Ok(Self::Decimal { precision, scale });
        }
        if text == "DateTime" || inner("DateTime(").is_some() {
            return Ok(Self::DateTime);
        }
        Ok(match text {
            "Int8" => Self::Int8,
            "Int16" => Self::Int16,
            "Int32" => Self::Int32,
            "Int64" => Self::Int64,
            "UInt8" | "Bool" => Self::UInt8,
            "UInt16" => Self::UInt16,
            "UInt32" => Self::UInt32,
            "UInt64" => Self::UInt64,
            "Float32" => Self::Float32,
            "Float64" => Self::Float64,
            "String" => Self::String,
            "Date" => Self::Date,
            other => return Err(format!("unsupported ClickHouse type {other}")),
        })
    }

    /// The Arrow type values are cast to before they are written.
    fn arrow_type(&self) -> DataType {
        match self {
            Self::Int8 => DataType::Int8,
            Self::Int16 => DataType::Int16,
            Self::Int32 => DataType::Int32,
            Self::Int64 => DataType::Int64,
            Self::UInt8 => DataType::UInt8,
            Self::UInt16 => DataType::UInt16,
            Self::UInt32 => DataType::UInt32,
            Self::UInt64 => DataType::UInt64,
            Self::Float32 => DataType::Float32,
            Self::Float64 => DataType::Float64,
            Self::String => DataType::Utf8,
            Self::Date => DataType::Date32,
            Self::DateTime => DataType::Timestamp(TimeUnit::Second, None),
            Self::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            Self::Nullable(inner) => inner.arrow_type(),
        }
    }

    /// The type without `Nullable`.
    pub fn base(&self) -> &ChType {
        match self {
            Self::Nullable(inner) => inner.base(),
            other => other,
        }
    }
}

impl fmt::Display for ChType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decimal { precision, scale } => write!(f, "Decimal({precision}, {scale})"),
            Self::Nullable(inner) => write!(f, "Nullable({inner})"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// A column of a ClickHouse table, as the insert writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: ChType,
}

/// Why a batch cannot be written.
#[derive(Debug, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct EncodeError {
    pub column: String,
    pub message: String,
}

/// One column of a batch, cast and ready to write.
struct Prepared<'a> {
    column: &'a Column,
    nullable: bool,
    array: ArrayRef,
}

/// Appends the rows of `batch` to `out` as RowBinary for `columns` (in that order), taking each
/// column from the batch field of the same name.
pub fn encode(
    batch: &RecordBatch,
    columns: &[Column],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let mut prepared = Vec::with_capacity(columns.len());
    for column in columns {
        let err = |message: String| EncodeError {
            column: column.name.clone(),
            message,
        };
        let source = batch
            .column_by_name(&column.name)
            .ok_or_else(|| err("the query result has no such column".into()))?;
        let nullable = matches!(column.ty, ChType::Nullable(_));
        let target = match (column.ty.base(), source.data_type()) {
            // Bytes go into a String column as they are (ClickHouse strings are byte strings).
            (ChType::String, DataType::Binary | DataType::LargeBinary | DataType::BinaryView) => {
                DataType::Binary
            }
            (base, _) => base.arrow_type(),
        };
        let array = cast_with_options(source, &target, &options).map_err(|e| {
            err(format!(
                "{} does not fit {}: {e}",
                source.data_type(),
                column.ty
            ))
        })?;
        if !nullable && array.null_count() > 0 {
            let row = (0..array.len()).find(|&i| array.is_null(i)).unwrap_or(0);
            return Err(err(format!(
                "row {row} is NULL but the ClickHouse type {} is not Nullable",
                column.ty
            )));
        }
        prepared.push(Prepared {
            column,
            nullable,
            array,
        });
    }
    for row in 0..batch.num_rows() {
        for p in &prepared {
            if p.nullable {
                if p.array.is_null(row) {
                    out.push(1);
                    continue;
                }
                out.push(0);
            }
            write_value(p, row, out).map_err(|message| EncodeError {
                column: p.column.name.clone(),
                message: format!("row {row}: {message}"),
            })?;
        }
    }
    Ok(())
}

fn write_value(p: &Prepared<'_>, row: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let a = &p.array;
    match p.column.ty.base() {
        ChType::Int8 => {
            out.extend_from_slice(&a.as_primitive::<Int8Type>().value(row).to_le_bytes())
        }
        ChType::Int16 => {
            out.extend_from_slice(&a.as_primitive::<Int16Type>().value(row).to_le_bytes())
        }
        ChType::Int32 => {
            out.extend_from_slice(&a.as_primitive::<Int32Type>().value(row).to_le_bytes())
        }
        ChType::Int64 => {
            out.extend_from_slice(&a.as_primitive::<Int64Type>().value(row).to_le_bytes())
        }
        ChType::UInt8 => out.push(a.as_primitive::<UInt8Type>().value(row)),
        ChType::UInt16 => {
            out.extend_from_slice(&a.as_primitive::<UInt16Type>().value(row).to_le_bytes())
        }
        ChType::UInt32 => {
            out.extend_from_slice(&a.as_primitive::<UInt32Type>().value(row).to_le_bytes())
        }
        ChType::UInt64 => {
            out.extend_from_slice(&a.as_primitive::<UInt64Type>().value(row).to_le_bytes())
        }
        ChType::Float32 => {
            out.extend_from_slice(&a.as_primitive::<Float32Type>().value(row).to_le_bytes())
        }
        ChType::Float64 => {
            out.extend_from_slice(&a.as_primitive::<Float64Type>().value(row).to_le_bytes())
        }
        ChType::String => {
            let value = match a.as_binary_opt::<i32>() {
                Some(bytes) => bytes.value(row),
                None => as_string_array(a).value(row).as_bytes(),
            };
            write_uleb128(value.len() as u64, out);
            out.extend_from_slice(value);
        }
        ChType::Date => {
            let days = a.as_primitive::<Date32Type>().value(row);
            let days = u16::try_from(days).map_err(|_| {
                format!("date {days} days from 1970 is outside 1970-01-01..2149-06-06")
            })?;
            out.extend_from_slice(&days.to_le_bytes());
        }
        ChType::DateTime => {
            let seconds = a
                .as_any()
                .downcast_ref::<TimestampSecondArray>()
                .ok_or("timestamp cast failed")?
                .value(row);
            let seconds = u32::try_from(seconds).map_err(|_| {
                format!("time {seconds} s from 1970 is outside 1970-01-01..2106-02-07")
            })?;
            out.extend_from_slice(&seconds.to_le_bytes());
        }
        ChType::Decimal { precision, .. } => {
            let value = a.as_primitive::<Decimal128Type>().value(row);
            // Decimal32/64/128 by precision; the cast already checked the precision.
            match precision {
                1..=9 => out.extend_from_slice(&(value as i32).to_le_bytes()),
                10..=18 => out.extend_from_slice(&(value as i64).to_le_bytes()),
                _ => out.extend_from_slice(&value.to_le_bytes()),
            }
        }
        ChType::Nullable(_) => return Err("nested Nullable".into()),
    }
    Ok(())
}

fn write_uleb128(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        BinaryArray, BooleanArray, Date32Array, Decimal128Array, Int32Array, Int64Array,
        StringArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn column(name: &str, ty: &str) -> Column {
        Column {
            name: name.into(),
            ty: ChType::parse(ty).unwrap(),
        }
    }

    #[test]
    fn parses_the_types_system_columns_reports() {
        assert_eq!(
            ChType::parse("Nullable(Decimal(18, 2))").unwrap(),
            ChType::Nullable(Box::new(ChType::Decimal {
                precision: 18,
                scale: 2
            }))
        );
        assert_eq!(ChType::parse("DateTime('UTC')").unwrap(), ChType::DateTime);
        assert_eq!(
            ChType::parse("LowCardinality(String)").unwrap(),
            ChType::String
        );
        assert!(
            ChType::parse("Array(String)")
                .unwrap_err()
                .contains("Array(String)")
        );
        assert!(ChType::parse("Decimal(40, 2)").is_err());
    }

    #[test]
    fn encodes_rows_in_column_order() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("flag", DataType::Boolean, false),
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("dt", DataType::Date32, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("price", DataType::Decimal128(12, 2), false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(BooleanArray::from(vec![true, false])),
                Arc::new(Int64Array::from(vec![1, -2])),
                Arc::new(StringArray::from(vec![Some("é"), None])),
                Arc::new(Date32Array::from(vec![1, 20_000])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![1_500_000, 3_000_000])
                        .with_timezone("UTC"),
                ),
                Arc::new(
                    Decimal128Array::from(vec![1234, -5])
                        .with_precision_and_scale(12, 2)
                        .unwrap(),
                ),
            ],
        )
        .unwrap();
        let columns = [
            column("id", "Int64"),
            column("name", "Nullable(String)"),
            column("dt", "Date"),
            column("ts", "DateTime('UTC')"),
            column("price", "Decimal(18, 2)"),
            column("flag", "UInt8"),
        ];
        let mut out = Vec::new();
        encode(&batch, &columns, &mut out).unwrap();
        let mut expected = Vec::new();
        // row 0
        expected.extend_from_slice(&1i64.to_le_bytes());
        expected.extend_from_slice(&[0, 2, 0xc3, 0xa9]);
        expected.extend_from_slice(&1u16.to_le_bytes());
        expected.extend_from_slice(&1u32.to_le_bytes());
        expected.extend_from_slice(&1234i64.to_le_bytes());
        expected.push(1);
        // row 1
        expected.extend_from_slice(&(-2i64).to_le_bytes());
        expected.push(1);
        expected.extend_from_slice(&20_000u16.to_le_bytes());
        expected.extend_from_slice(&3u32.to_le_bytes());
        expected.extend_from_slice(&(-5i64).to_le_bytes());
        expected.push(0);
        assert_eq!(out, expected);
    }

    #[test]
    fn refuses_what_does_not_fit_and_names_the_column() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("d", DataType::Date32, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(Date32Array::from(vec![5, -1])),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        let err = encode(&batch, &[column("n", "Int64")], &mut out).unwrap_err();
        assert_eq!(err.column, "n");
        assert!(err.message.contains("row 1 is NULL"), "{err}");
        let err = encode(
            &batch,
            &[column("n", "Nullable(Int8)"), column("x", "Int8")],
            &mut out,
        )
        .unwrap_err();
        assert_eq!(err.column, "x");
        let err = encode(&batch, &[column("d", "Date")], &mut out).unwrap_err();
        assert!(
            err.to_string().contains("column d: row 1: date -1"),
            "{err}"
        );
        let wide = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("v", DataType::Int32, false)])),
            vec![Arc::new(Int32Array::from(vec![300]))],
        )
        .unwrap();
        let err = encode(&wide, &[column("v", "Int8")], &mut out).unwrap_err();
        assert!(err.message.contains("does not fit Int8"), "{err}");
    }

    #[test]
    fn bytes_go_into_strings_unchanged() {
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("b", DataType::Binary, true)])),
            vec![Arc::new(BinaryArray::from(vec![
                Some(&[0xff, 0x00][..]),
                None,
            ]))],
        )
        .unwrap();
        let mut out = Vec::new();
        encode(&batch, &[column("b", "Nullable(String)")], &mut out).unwrap();
        assert_eq!(out, [0, 2, 0xff, 0x00, 1]);
    }

    #[test]
    fn leb128_lengths() {
        let mut out = Vec::new();
        write_uleb128(300, &mut out);
        assert_eq!(out, [0xac, 0x02]);
    }
}
