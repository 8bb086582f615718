//! Functions whose output can be far larger than their input, bounded.
//!
//! `repeat('x', 1e9)`, `lpad('x', 1e9)`, `array_repeat(1, 5e8)` or `range(1e9)` build one huge value
//! in a single call, outside the query's memory pool: a 40-byte query can take gigabytes. Each of
//! these functions is registered again, wrapped: before the real function runs, the wrapper works
//! out from its arguments how many bytes the call would produce (for every row of the batch) and
//! refuses with RESOURCES_EXHAUSTED when that is more than [`crate::Limits::max_function_output`].
//! Everything else (signature, types, simplification) is the wrapped function's.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// How a function's output grows with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: the text's bytes × n.
    Repeat,
    /// `lpad(text, n [, fill])`, `rpad`: n characters of up to 4 bytes.
    Pad,
    /// `array_repeat(element, n)`: n elements.
    ArrayRepeat,
    /// `array_resize(array, n [, value])`: n elements.
    ArrayResize,
    /// `range([start,] stop [, step])`, `generate_series`: (stop − start) / step elements.
    Range,
    /// `replace(text, from, to)`, `regexp_replace(text, pattern, to [, flags])`: every byte of
    /// the text may become `to`.
    Replace,
}

/// The functions that are wrapped, by name.
const BOUNDED: [(&str, Growth); 8] = [
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("array_repeat", Growth::ArrayRepeat),
    ("array_resize", Growth::ArrayResize),
    ("range", Growth::Range),
    ("generate_series", Growth::Range),
    ("replace", Growth::Replace),
];

/// Bytes counted for one list element.
const ELEMENT_BYTES: u128 = 8;

/// Replaces the functions of [`BOUNDED`] in `ctx` with wrappers that refuse calls producing more
/// than `limit` bytes.
pub fn register_bounded(ctx: &SessionContext, limit: u64) {
    for (name, growth) in BOUNDED
        .into_iter()
        .chain([("regexp_replace", Growth::Replace)])
    {
        let Ok(inner) = ctx.udf(name) else {
            continue;
        };
        ctx.register_udf(ScalarUDF::new_from_impl(Bounded {
            inner,
            growth,
            limit,
        }));
    }
}

/// A function whose calls are refused beyond `limit` bytes of output.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    growth: Growth,
    limit: u64,
}

impl Bounded {
    /// Refuses the call when its output would exceed the limit.
    fn check(&self, args: &ScalarFunctionArgs) -> Result<()> {
        let values = &args.args;
        // With only scalar arguments the function computes one value, whatever the batch size.
        let rows = if values.iter().all(|v| matches!(v, ColumnarValue::Scalar(_))) {
            1
        } else {
            args.number_rows
        };
        let Some(bytes) = self.output_bytes(values, rows)? else {
            return Ok(());
        };
        if bytes > u128::from(self.limit) {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}(…) would produce about {bytes} bytes for one batch, over the server's limit \
                 of {} bytes for one function call",
                self.inner.name(),
                self.limit
            )));
        }
        Ok(())
    }

    /// Bytes the call would produce, summed over the rows; `None` when the arguments are of a
    /// kind this does not estimate (the call then runs unchecked).
    fn output_bytes(&self, args: &[ColumnarValue], rows: usize) -> Result<Option<u128>> {
        let int = |i: usize| args.get(i).map(|a| integers(a, rows)).transpose();
        let len = |i: usize| args.get(i).map(|a| byte_lengths(a, rows)).transpose();
        let total = |per_row: &dyn Fn(usize) -> u128| (0..rows).map(per_row).sum::<u128>();
        Ok(match self.growth {
            Growth::Repeat => match (len(0)?.flatten(), int(1)?.flatten()) {
                (Some(text), Some(n)) => Some(total(&|r| text[r] * positive(n[r]))),
                _ => None,
            },
            Growth::Pad => int(1)?.flatten().map(|n| total(&|r| 4 * positive(n[r]))),
            Growth::ArrayRepeat => int(1)?.flatten().map(|n| {
                let element = len(0).ok().flatten().flatten();
                total(&|r| {
                    let size = element.as_ref().map_or(0, |e| e[r]).max(ELEMENT_BYTES);
                    size * positive(n[r])
                })
            }),
            Growth::ArrayResize => int(1)?
                .flatten()
                .map(|n| total(&|r| ELEMENT_BYTES * positive(n[r]))),
            Growth::Range => {
                let (start, stop, step) = match args.len() {
                    1 => (None, int(0)?.flatten(), None),
                    _ => (int(0)?.flatten(), int(1)?.flatten(), int(2)?.flatten()),
                };
                let Some(stop) = stop else {
                    return Ok(None);
                };
                if args.len() > 1 && start.is_none() {
                    return Ok(None);
                }
                Some(total(&|r| {
                    let from = start.as_ref().map_or(0, |s| s[r]);
                    let step = step.as_ref().map_or(1, |s| s[r]).unsigned_abs().max(1);
                    let span = (i128::from(stop[r]) - i128::from(from)).unsigned_abs();
                    ELEMENT_BYTES * (span / u128::from(step) + 1)
                }))
            }
            Growth::Replace => match (len(0)?.flatten(), len(2)?.flatten()) {
                (Some(text), Some(to)) => Some(total(&|r| text[r] * to[r].max(1))),
                _ => None,
            },
        })
    }
}

fn positive(n: i64) -> u128 {
    u128::try_from(n).unwrap_or(0)
}

/// The argument as one i64 a row (nulls as 0); `None` when it is not an integer.
fn integers(arg: &ColumnarValue, rows: usize) -> Result<Option<Vec<i64>>> {
    if !arg.data_type().is_integer() {
        return Ok(None);
    }
    let array = as_array(arg)?;
    let array = arrow::compute::cast(&array, &DataType::Int64)?;
    let values = array.as_primitive::<Int64Type>();
    Ok(Some(broadcast(values.len(), rows, |i| {
        if values.is_null(i) {
            0
        } else {
            values.value(i)
        }
    })))
}

/// The argument's byte length a row (nulls as 0); `None` when it is not text or binary.
fn byte_lengths(arg: &ColumnarValue, rows: usize) -> Result<Option<Vec<u128>>> {
    let array = as_array(arg)?;
    let lengths: Vec<u128> = match array.data_type() {
        DataType::Utf8 => lengths_of(array.as_string::<i32>().iter().map(|v| v.map(str::len))),
        DataType::LargeUtf8 => lengths_of(array.as_string::<i64>().iter().map(|v| v.map(str::len))),
        DataType::Utf8View => lengths_of(array.as_string_view().iter().map(|v| v.map(str::len))),
        DataType::Binary => lengths_of(array.as_binary::<i32>().iter().map(|v| v.map(<[u8]>::len))),
        DataType::LargeBinary => {
            lengths_of(array.as_binary::<i64>().iter().map(|v| v.map(<[u8]>::len)))
        }
        DataType::BinaryView => {
            lengths_of(array.as_binary_view().iter().map(|v| v.map(<[u8]>::len)))
        }
        _ => return Ok(None),
    };
    Ok(Some(broadcast(lengths.len(), rows, |i| lengths[i])))
}

fn lengths_of(values: impl Iterator<Item = Option<usize>>) -> Vec<u128> {
    values.map(|v| v.unwrap_or(0) as u128).collect()
}

/// One value a row: a one-value array (a scalar) repeated, or the array's own values.
fn broadcast<T: Copy>(len: usize, rows: usize, value: impl Fn(usize) -> T) -> Vec<T> {
    if len == 1 {
        vec![value(0); rows]
    } else {
        (0..len.min(rows)).map(value).collect()
    }
}

fn as_array(arg: &ColumnarValue) -> Result<ArrayRef> {
    match arg {
        ColumnarValue::Array(array) => Ok(Arc::clone(array)),
        ColumnarValue::Scalar(scalar) => scalar_array(scalar),
    }
}

fn scalar_array(scalar: &ScalarValue) -> Result<ArrayRef> {
    scalar.to_array_of_size(1)
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.inner().schema_name(args)
    }

    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.check(&args)?;
        self.inner.invoke_with_args(args)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<arrow::array::RecordBatch>> {
        ctx.sql(sql).await?.collect().await
    }

    #[tokio::test]
    async fn large_outputs_are_refused_and_small_ones_computed() {
        let ctx = SessionContext::new();
        register_bounded(&ctx, 1 << 20);
        for sql in [
            "SELECT length(repeat('x', 1000000000))",
            "SELECT length(lpad('x', 1000000000))",
            "SELECT length(rpad('x', 1000000000, 'yz'))",
            "SELECT cardinality(array_repeat(1, 500000000))",
            "SELECT cardinality(range(1000000000))",
            "SELECT cardinality(range(5, 1000000000, 1))",
            "SELECT cardinality(generate_series(1, 1000000000))",
            "SELECT cardinality(array_resize([1], 1000000000))",
            "SELECT length(replace(repeat('x', 100000), 'x', repeat('y', 100)))",
            // An array argument: 1,000 rows of 2 KiB each.
            "SELECT max(length(repeat('x', 2048 + v))) FROM (SELECT value AS v FROM range(1000))",
        ] {
            let err = run(&ctx, sql).await.unwrap_err();
            assert!(
                matches!(err.find_root(), DataFusionError::ResourcesExhausted(m) if m.contains("limit")),
                "{sql}: {err}"
            );
        }
        let batches = run(
            &ctx,
            "SELECT length(repeat('ab', 1000)), length(lpad('x', 10)), \
             cardinality(range(10)), cardinality(array_repeat('a', 3)), replace('aXa', 'X', 'bb')",
        )
        .await
        .unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(text.contains("| 2000 "), "{text}");
        assert!(text.contains("abba"), "{text}");
        // A scalar call in a query over many rows is computed once.
        run(
            &ctx,
            "SELECT count(*) FROM range(100000) WHERE length(repeat('x', 500000)) > 0",
        )
        .await
        .unwrap();
    }
}
