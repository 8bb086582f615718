//! Parameter batches sent with `DoPut`, read defensively.
//!
//! The Arrow IPC messages of a `DoPut` come straight from the network. arrow-ipc's schema
//! conversion panics on many malformed inputs (a field without its type table, an integer of 7
//! bits, a decimal of 300 digits), and a batch may claim buffers beyond its body or billions of
//! rows. So before anything is decoded:
//! - the whole upload is bounded ([`MAX_PARAMETER_BYTES`]);
//! - the schema is rebuilt here from the verified flatbuffer, for flat parameter types only
//!   (numbers, text, binary, dates and times, decimals), every value range checked;
//! - every batch is checked: at most [`MAX_PARAMETER_ROWS`] rows, one node per column with a
//!   consistent null count, every buffer inside the body, no compression, no dictionaries.
//!
//! Only then does arrow-ipc read the batches, and a panic that still slipped through is caught
//! and answered as a bad request.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, Field, IntervalUnit, Schema, SchemaRef, TimeUnit};
use arrow::ipc::{self, MessageHeader, MetadataVersion};
use arrow_flight::FlightData;
use futures::{Stream, StreamExt};

use crate::error::Error;

/// Bytes of Arrow IPC one `DoPut` of parameters may send.
pub const MAX_PARAMETER_BYTES: usize = 16 << 20;
/// Rows of parameters one statement may be bound to.
pub const MAX_PARAMETER_ROWS: i64 = 100_000;
/// Columns (parameters) one statement may have.
pub const MAX_PARAMETER_COLUMNS: usize = 1_000;

/// What each `DoPut` message counts against [`MAX_PARAMETER_BYTES`] beyond its bytes.
const MESSAGE_OVERHEAD: usize = 256;

fn invalid(why: impl std::fmt::Display) -> Error {
    Error::InvalidRequest(format!("cannot read the bound parameters: {why}"))
}

/// Reads the messages of a `DoPut`, refusing more than [`MAX_PARAMETER_BYTES`].
pub async fn read<E: std::fmt::Display>(
    stream: impl Stream<Item = Result<FlightData, E>>,
) -> Result<Vec<FlightData>, Error> {
    let mut stream = std::pin::pin!(stream);
    let mut messages = Vec::new();
    let mut bytes = 0_usize;
    while let Some(message) = stream.next().await {
        let message = message.map_err(invalid)?;
        // Every part of a message counts, and so does each message (an empty one costs memory
        // too), so that no stream of small or descriptor-only messages grows without bound.
        let descriptor = message.flight_descriptor.as_ref().map_or(0, |d| {
            d.cmd.len() + d.path.iter().map(|p| p.len() + 8).sum::<usize>()
        });
        bytes += message.data_header.len()
            + message.data_body.len()
            + message.app_metadata.len()
            + descriptor
            + MESSAGE_OVERHEAD;
        if bytes > MAX_PARAMETER_BYTES {
            return Err(Error::TooLarge(format!(
                "the bound parameters exceed the server's limit of {MAX_PARAMETER_BYTES} bytes"
            )));
        }
        messages.push(message);
    }
    Ok(messages)
}

/// The parameter batches of `messages` (a schema message, then record batches).
pub fn decode(messages: &[FlightData]) -> Result<Vec<RecordBatch>, Error> {
    match std::panic::catch_unwind(|| decode_checked(messages)) {
        Ok(result) => result,
        Err(_) => {
            tracing::error!("decoding bound parameters panicked; refused as a bad request");
            Err(invalid("the Arrow IPC messages are malformed"))
        }
    }
}

/// [`decode`] without the panic guard (the fuzz test calls this, so that a panic fails it).
fn decode_checked(messages: &[FlightData]) -> Result<Vec<RecordBatch>, Error> {
    let mut schema: Option<SchemaRef> = None;
    let mut batches = Vec::new();
    let mut rows = 0_i64;
    for data in messages.iter().filter(|m| !m.data_header.is_empty()) {
        let message = ipc::root_as_message(&data.data_header)
            .map_err(|e| invalid(format!("not an Arrow IPC message: {e}")))?;
        if !matches!(message.version(), MetadataVersion::V4 | MetadataVersion::V5) {
            return Err(invalid("unsupported Arrow IPC metadata version"));
        }
        match message.header_type() {
            MessageHeader::Schema => {
                let fb = message
                    .header_as_schema()
                    .ok_or_else(|| invalid("the schema message has no schema"))?;
                schema = Some(Arc::new(parameter_schema(fb)?));
            }
            MessageHeader::RecordBatch => {
                let schema = schema
                    .as_ref()
                    .ok_or_else(|| invalid("a record batch came before the schema"))?;
                let batch = message
                    .header_as_record_batch()
                    .ok_or_else(|| invalid("the record batch message has no batch"))?;
                if message.bodyLength() != data.data_body.len() as i64 {
                    return Err(invalid("the message's body length does not match its body"));
                }
                check_batch(&batch, schema, data.data_body.len())?;
                rows += batch.length();
                if rows > MAX_PARAMETER_ROWS {
                    return Err(Error::TooLarge(format!(
                        "more than {MAX_PARAMETER_ROWS} rows of parameters were bound"
                    )));
                }
                let body = Buffer::from(data.data_body.as_ref());
                let decoded = ipc::reader::read_record_batch(
                    &body,
                    batch,
                    Arc::clone(schema),
                    &HashMap::new(),
                    None,
                    &message.version(),
                )
                .map_err(invalid)?;
                batches.push(decoded);
            }
            MessageHeader::DictionaryBatch => {
                return Err(invalid("dictionary-encoded parameters are not supported"));
            }
            _ => return Err(invalid("unexpected Arrow IPC message")),
        }
    }
    Ok(batches)
}

/// Checks a record batch header against the schema and the body it came with.
fn check_batch(batch: &ipc::RecordBatch, schema: &Schema, body: usize) -> Result<(), Error> {
    if batch.compression().is_some() {
        return Err(invalid("compressed parameter batches are not supported"));
    }
    if batch.variadicBufferCounts().is_some_and(|c| !c.is_empty()) {
        return Err(invalid("view types are not supported as parameters"));
    }
    let length = batch.length();
    if !(0..=MAX_PARAMETER_ROWS).contains(&length) {
        return Err(Error::TooLarge(format!(
            "a parameter batch has {length} rows; the limit is {MAX_PARAMETER_ROWS}"
        )));
    }
    let nodes = batch
        .nodes()
        .ok_or_else(|| invalid("the batch has no nodes"))?;
    if nodes.len() != schema.fields().len() {
        return Err(invalid(format!(
            "the batch has {} columns but its schema {}",
            nodes.len(),
            schema.fields().len()
        )));
    }
    let buffers = batch
        .buffers()
        .ok_or_else(|| invalid("the batch has no buffers"))?;
    let mut lengths = Vec::with_capacity(buffers.len());
    // Buffers are slices of the body, not copies: buffers that overlap (every column pointing
    // at the same bytes) would decode to many times the body's size. Disjoint buffers never
    // add up to more than the body.
    let mut total = 0_u64;
    for buffer in buffers.iter() {
        let (offset, len) = (buffer.offset(), buffer.length());
        let end = offset.checked_add(len);
        if offset < 0 || len < 0 || end.is_none_or(|end| end as u64 > body as u64) {
            return Err(invalid("a buffer lies outside the message body"));
        }
        // The format aligns every buffer to 8 bytes; arrow asserts it for typed access.
        if offset % 8 != 0 {
            return Err(invalid("a buffer is not aligned to 8 bytes"));
        }
        total = total.saturating_add(len as u64);
        if total > body as u64 {
            return Err(invalid(
                "the buffers overlap or add up to more than the message body",
            ));
        }
        lengths.push(len as u64);
    }
    // Each column's buffers, in order, must be large enough for its rows (arrow asserts this
    // before it validates, so a short buffer would panic).
    let rows = length as u64;
    let bits = rows.div_ceil(8);
    let mut next = lengths.into_iter();
    let mut take = || {
        next.next()
            .ok_or_else(|| invalid("the batch has too few buffers"))
    };
    for (node, field) in nodes.iter().zip(schema.fields()) {
        if node.length() != length || !(0..=length).contains(&node.null_count()) {
            return Err(invalid(
                "a column's length or null count does not match the batch",
            ));
        }
        let short = || {
            invalid(format!(
                "a buffer of parameter {} is too short",
                field.name()
            ))
        };
        let data_type = field.data_type();
        if data_type == &DataType::Null {
            continue;
        }
        let validity = take()?;
        if node.null_count() > 0 && validity < bits {
            return Err(short());
        }
        let values = take()?;
        let fits = match data_type {
            DataType::Boolean => values >= bits,
            DataType::FixedSizeBinary(width) => values >= rows * *width as u64,
            DataType::Utf8 | DataType::Binary => values >= (rows + 1) * 4 && values % 4 == 0,
            DataType::LargeUtf8 | DataType::LargeBinary => {
                values >= (rows + 1) * 8 && values % 8 == 0
            }
            other => match other.primitive_width() {
                Some(width) => values >= rows * width as u64 && values % width as u64 == 0,
                None => false,
            },
        };
        if !fits {
            return Err(short());
        }
        if matches!(
            data_type,
            DataType::Utf8 | DataType::Binary | DataType::LargeUtf8 | DataType::LargeBinary
        ) {
            take()?;
        }
    }
    Ok(())
}

/// The schema of a parameter batch: flat columns of the types a parameter can have.
fn parameter_schema(fb: ipc::Schema) -> Result<Schema, Error> {
    if fb.endianness() != ipc::Endianness::Little {
        return Err(invalid("big-endian parameter batches are not supported"));
    }
    let fields = fb
        .fields()
        .ok_or_else(|| invalid("the schema has no fields"))?;
    if fields.len() > MAX_PARAMETER_COLUMNS {
        return Err(Error::TooLarge(format!(
            "{} parameters were bound; the limit is {MAX_PARAMETER_COLUMNS}",
            fields.len()
        )));
    }
    fields
        .iter()
        .enumerate()
        .map(|(i, field)| {
            if field.dictionary().is_some() || field.children().is_some_and(|c| !c.is_empty()) {
                return Err(invalid(format!(
                    "parameter {} is nested or dictionary-encoded; bind plain values",
                    i + 1
                )));
            }
            let name = field.name().unwrap_or_default();
            let data_type = parameter_type(&field)
                .ok_or_else(|| invalid(format!("parameter {} has an unsupported type", i + 1)))?;
            Ok(Field::new(name, data_type, field.nullable()))
        })
        .collect::<Result<Vec<_>, Error>>()
        .map(Schema::new)
}

/// The Arrow type of a flat field, with every parameter range checked; `None` if unsupported.
fn parameter_type(field: &ipc::Field) -> Option<DataType> {
    use ipc::Type;
    let time_unit = |unit: ipc::TimeUnit| match unit {
        ipc::TimeUnit::SECOND => Some(TimeUnit::Second),
        ipc::TimeUnit::MILLISECOND => Some(TimeUnit::Millisecond),
        ipc::TimeUnit::MICROSECOND => Some(TimeUnit::Microsecond),
        ipc::TimeUnit::NANOSECOND => Some(TimeUnit::Nanosecond),
        _ => None,
    };
    Some(match field.type_type() {
        Type::Null => DataType::Null,
        Type::Bool => DataType::Boolean,
        Type::Int => {
            let int = field.type_as_int()?;
            match (int.bitWidth(), int.is_signed()) {
                (8, true) => DataType::Int8,
                (16, true) => DataType::Int16,
                (32, true) => DataType::Int32,
                (64, true) => DataType::Int64,
                (8, false) => DataType::UInt8,
                (16, false) => DataType::UInt16,
                (32, false) => DataType::UInt32,
                (64, false) => DataType::UInt64,
                _ => return None,
            }
        }
        Type::FloatingPoint => match field.type_as_floating_point()?.precision() {
            ipc::Precision::HALF => DataType::Float16,
            ipc::Precision::SINGLE => DataType::Float32,
            ipc::Precision::DOUBLE => DataType::Float64,
            _ => return None,
        },
        Type::Utf8 => DataType::Utf8,
        Type::LargeUtf8 => DataType::LargeUtf8,
        Type::Binary => DataType::Binary,
        Type::LargeBinary => DataType::LargeBinary,
        Type::FixedSizeBinary => {
            let width = field.type_as_fixed_size_binary()?.byteWidth();
            if !(1..=1 << 20).contains(&width) {
                return None;
            }
            DataType::FixedSizeBinary(width)
        }
        Type::Date => match field.type_as_date()?.unit() {
            ipc::DateUnit::DAY => DataType::Date32,
            ipc::DateUnit::MILLISECOND => DataType::Date64,
            _ => return None,
        },
        Type::Time => {
            let time = field.type_as_time()?;
            match (time_unit(time.unit())?, time.bitWidth()) {
                (unit @ (TimeUnit::Second | TimeUnit::Millisecond), 32) => DataType::Time32(unit),
                (unit @ (TimeUnit::Microsecond | TimeUnit::Nanosecond), 64) => {
                    DataType::Time64(unit)
                }
                _ => return None,
            }
        }
        Type::Timestamp => {
            let ts = field.type_as_timestamp()?;
            let tz = ts.timezone().map(|tz| Arc::from(tz.to_string()));
            DataType::Timestamp(time_unit(ts.unit())?, tz)
        }
        Type::Duration => DataType::Duration(time_unit(field.type_as_duration()?.unit())?),
        Type::Interval => match field.type_as_interval()?.unit() {
            ipc::IntervalUnit::YEAR_MONTH => DataType::Interval(IntervalUnit::YearMonth),
            ipc::IntervalUnit::DAY_TIME => DataType::Interval(IntervalUnit::DayTime),
            ipc::IntervalUnit::MONTH_DAY_NANO => DataType::Interval(IntervalUnit::MonthDayNano),
            _ => return None,
        },
        Type::Decimal => {
            let decimal = field.type_as_decimal()?;
            let precision = u8::try_from(decimal.precision()).ok()?;
            let scale = i8::try_from(decimal.scale()).ok()?;
            if precision == 0 || i16::from(scale) > i16::from(precision) {
                return None;
            }
            match decimal.bitWidth() {
                128 if precision <= 38 => DataType::Decimal128(precision, scale),
                256 if precision <= 76 => DataType::Decimal256(precision, scale),
                _ => return None,
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        ArrayRef, Decimal128Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use arrow_flight::utils::batches_to_flight_data;
    use rand::{Rng, SeedableRng};

    fn valid_messages() -> Vec<FlightData> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
            Arc::new(StringArray::from(vec![Some("a"), Some("bc"), None])),
            Arc::new(
                Decimal128Array::from(vec![Some(12345), None, Some(-1)])
                    .with_precision_and_scale(12, 2)
                    .unwrap(),
            ),
            Arc::new(TimestampMicrosecondArray::from(vec![1, 2, 3]).with_timezone("UTC")),
        ];
        let batch = RecordBatch::try_from_iter(
            ["a", "b", "c", "d"]
                .into_iter()
                .zip(columns)
                .collect::<Vec<_>>(),
        )
        .unwrap();
        batches_to_flight_data(&batch.schema(), vec![batch.clone(), batch]).unwrap()
    }

    #[test]
    fn valid_parameters_are_read() {
        let batches = decode(&valid_messages()).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].num_rows(), 3);
        assert_eq!(
            batches[0].schema().field(2).data_type(),
            &DataType::Decimal128(12, 2)
        );
    }

    #[test]
    fn nested_and_oversized_parameters_are_refused() {
        let list = arrow::array::ListArray::from_iter_primitive::<arrow::datatypes::Int32Type, _, _>(
            vec![Some(vec![Some(1)])],
        );
        let batch = RecordBatch::try_from_iter([("l", Arc::new(list) as ArrayRef)]).unwrap();
        let messages = batches_to_flight_data(&batch.schema(), vec![batch]).unwrap();
        let err = decode(&messages).unwrap_err();
        assert!(err.to_string().contains("nested"), "{err}");

        let big = Int64Array::from(vec![7_i64; (MAX_PARAMETER_ROWS + 1) as usize]);
        let batch = RecordBatch::try_from_iter([("n", Arc::new(big) as ArrayRef)]).unwrap();
        let messages = batches_to_flight_data(&batch.schema(), vec![batch]).unwrap();
        assert!(matches!(decode(&messages), Err(Error::TooLarge(_))));
    }

    /// Two columns whose data buffers point at the same bytes: each buffer lies inside the body,
    /// but together they would decode to more than the body (with 1,000 columns, to 1,000 times).
    #[test]
    fn overlapping_buffers_are_refused() {
        let column = || Arc::new(Int64Array::from(vec![1_i64, 2, 3, 4, 5])) as ArrayRef;
        let batch = RecordBatch::try_from_iter([("x", column()), ("y", column())]).unwrap();
        let mut messages = batches_to_flight_data(&batch.schema(), vec![batch]).unwrap();
        decode(&messages).unwrap();
        let le = |values: &[i64]| {
            values
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<_>>()
        };
        let replace = |bytes: &[u8], from: &[u8], to: &[u8]| {
            let at: Vec<usize> = (0..=bytes.len() - from.len())
                .filter(|&i| bytes[i..].starts_with(from))
                .collect();
            assert_eq!(at.len(), 1, "the pattern must occur once");
            let mut out = bytes.to_vec();
            out[at[0]..at[0] + to.len()].copy_from_slice(to);
            out
        };
        let message = &mut messages[1];
        let parsed = ipc::root_as_message(&message.data_header).unwrap();
        let body = parsed.bodyLength();
        let buffers: Vec<(i64, i64)> = parsed
            .header_as_record_batch()
            .unwrap()
            .buffers()
            .unwrap()
            .iter()
            .map(|b| (b.offset(), b.length()))
            .collect();
        // Validity and data of x, then of y.
        let (x, y_valid, y) = (buffers[1], buffers[2], buffers[3]);
        assert_eq!((x.1, y_valid.1, y.1), (40, 0, 40), "{buffers:?}");
        // y's buffers now point at x's, and the body ends after x: 40 bytes that would decode
        // to 80.
        let header = replace(&message.data_header, &le(&[y.0, y.1]), &le(&[x.0, x.1]));
        let header = replace(&header, &le(&[y_valid.0, 0]), &le(&[x.0, 0]));
        let header = replace(&header, &le(&[body]), &le(&[x.0 + x.1]));
        message.data_header = header.into();
        message.data_body = message.data_body.slice(0..(x.0 + x.1) as usize);
        let err = decode_checked(&messages).unwrap_err();
        assert!(err.to_string().contains("overlap"), "{err}");
    }

    #[tokio::test]
    async fn descriptor_only_messages_count_against_the_limit() {
        let chunk = FlightData {
            flight_descriptor: Some(arrow_flight::FlightDescriptor::new_cmd(vec![0_u8; 1 << 20])),
            ..Default::default()
        };
        let stream = futures::stream::iter((0..17).map(|_| Ok::<_, Error>(chunk.clone())));
        assert!(matches!(read(stream).await, Err(Error::TooLarge(_))));
        // Empty messages count too.
        let stream = futures::stream::iter(
            (0..MAX_PARAMETER_BYTES / MESSAGE_OVERHEAD + 1)
                .map(|_| Ok::<_, Error>(FlightData::default())),
        );
        assert!(matches!(read(stream).await, Err(Error::TooLarge(_))));
    }

    #[tokio::test]
    async fn uploads_over_the_limit_are_refused_while_read() {
        let chunk = FlightData {
            data_body: vec![0_u8; 1 << 20].into(),
            ..Default::default()
        };
        let stream = futures::stream::iter((0..17).map(|_| Ok::<_, Error>(chunk.clone())));
        assert!(matches!(read(stream).await, Err(Error::TooLarge(_))));
    }

    /// Mutated messages (flipped bytes, truncations, random lengths) are refused or read, never a
    /// panic: this calls the path without the panic guard.
    #[test]
    fn mutated_messages_never_panic() {
        // SHOP_FUZZ_SEED and SHOP_FUZZ_ROUNDS explore further than the CI default.
        let env = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let seed = env("SHOP_FUZZ_SEED", 0x5eed);
        let rounds = env("SHOP_FUZZ_ROUNDS", 20_000);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let valid = valid_messages();
        let mut panics = Vec::new();
        for round in 0..rounds {
            let mut messages = valid.clone();
            let which = rng.random_range(0..messages.len());
            let target = &mut messages[which];
            let header = rng.random_bool(0.7);
            let mut bytes = if header {
                target.data_header.to_vec()
            } else {
                target.data_body.to_vec()
            };
            if bytes.is_empty() {
                continue;
            }
            for _ in 0..rng.random_range(1..=4) {
                match rng.random_range(0..4) {
                    0 => {
                        let i = rng.random_range(0..bytes.len());
                        bytes[i] ^= 1 << rng.random_range(0..8);
                    }
                    1 => {
                        let i = rng.random_range(0..bytes.len());
                        bytes[i] = rng.random();
                    }
                    2 => {
                        let keep = rng.random_range(0..bytes.len());
                        bytes.truncate(keep.max(1));
                    }
                    _ => {
                        // A large little-endian number where a length or offset may be.
                        let i = rng.random_range(0..bytes.len());
                        for (k, b) in [0xff_u8, 0xff, 0xff, 0x7f].into_iter().enumerate() {
                            if let Some(slot) = bytes.get_mut(i + k) {
                                *slot = b;
                            }
                        }
                    }
                }
            }
            if header {
                target.data_header = bytes.into();
            } else {
                target.data_body = bytes.into();
            }
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                decode_checked(&messages)
            }));
            if outcome.is_err() {
                panics.push(round);
            }
        }
        assert!(
            panics.is_empty(),
            "seed {seed}: {} of {rounds} mutations panicked, first rounds {:?}",
            panics.len(),
            &panics[..panics.len().min(10)]
        );
    }
}
