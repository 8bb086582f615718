//! PostgreSQL column types and their Arrow types.
//!
//! | PostgreSQL                                   | Arrow                         |
//! |----------------------------------------------|-------------------------------|
//! | `boolean`                                    | Boolean                       |
//! | `smallint` / `integer` / `bigint`            | Int16 / Int32 / Int64         |
//! | `real` / `double precision`                  | Float32 / Float64             |
//! | `numeric(p,s)`, p ≤ 38, 0 ≤ s ≤ p            | Decimal128(p, s)              |
//! | `numeric` (no precision)                     | Decimal128(38, 9)             |
//! | `text`, `varchar(n)`, `char(n)`, `name`, enums, `citext` | Utf8             |
//! | `uuid`                                       | Utf8 (lower-case, hyphenated) |
//! | `json`, `jsonb`                              | Utf8 (the JSON text)          |
//! | `bytea`                                      | Binary                        |
//! | `date`                                       | Date32                        |
//! | `time`                                       | Utf8 `HH:MM:SS.ffffff`        |
//! | `timestamp`                                  | Timestamp(µs)                 |
//! | `timestamptz`                                | Timestamp(µs, "UTC")          |
//!
//! Domains map like their base type. Every other type (arrays, intervals, ranges, geometric and
//! network types, …) is refused before anything is read, naming `table.column` and the type.

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sqlx::PgConnection;
use std::sync::Arc;

use super::Error;

/// How a column's values are decoded from the binary COPY format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgKind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// `numeric(precision, scale)`.
    Numeric {
        precision: u8,
        scale: i8,
    },
    Text,
    Uuid,
    Json,
    Jsonb,
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
}

/// Precision and scale used for a `numeric` column declared without them.
pub const UNCONSTRAINED_NUMERIC: (u8, i8) = (38, 9);

impl PgKind {
    pub fn arrow_type(self) -> DataType {
        match self {
            Self::Bool => DataType::Boolean,
            Self::Int2 => DataType::Int16,
            Self::Int4 => DataType::Int32,
            Self::Int8 => DataType::Int64,
            Self::Float4 => DataType::Float32,
            Self::Float8 => DataType::Float64,
            Self::Numeric { precision, scale } => DataType::Decimal128(precision, scale),
            Self::Text | Self::Uuid | Self::Json | Self::Jsonb | Self::Time => DataType::Utf8,
            Self::Bytea => DataType::Binary,
            Self::Date => DataType::Date32,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Self::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }

    /// True for integer kinds, the ones a primary key for incremental exports may have.
    pub fn is_integer(self) -> bool {
        matches!(self, Self::Int2 | Self::Int4 | Self::Int8)
    }

    /// True for the timestamp kinds an `updated_at` column may have.
    pub fn is_timestamp(self) -> bool {
        matches!(self, Self::Timestamp | Self::TimestampTz)
    }
}

/// One column of a source table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgColumn {
    pub name: String,
    /// The type as declared, e.g. `numeric(12,2)` or `email_address`.
    pub declared: String,
    pub kind: PgKind,
    pub nullable: bool,
}

/// A source table: its quoted name and columns in table order.
#[derive(Debug, Clone)]
pub struct PgTable {
    /// The name as given (`customers`, `crm.customers`), for messages and the lake.
    pub name: String,
    /// The schema-qualified, quoted name to put into SQL.
    pub qualified: String,
    pub columns: Vec<PgColumn>,
    /// The primary key's column when it is a single column.
    pub primary_key: Option<String>,
}

impl PgTable {
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.kind.arrow_type(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    pub fn column(&self, name: &str) -> Option<&PgColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The column list for a SELECT, every name quoted.
    pub fn select_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Quotes an identifier for PostgreSQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Columns with their base types (domains resolved, however deeply nested) and type modifiers.
const COLUMNS_SQL: &str = r#"
WITH RECURSIVE cols AS (
    SELECT a.attnum, a.attname::text AS name, NOT a.attnotnull AS nullable,
           format_type(a.atttypid, a.atttypmod) AS declared,
           a.atttypid AS type_oid, a.atttypmod AS typmod
    FROM pg_attribute a
    WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
), base AS (
    SELECT attnum, type_oid, typmod FROM cols
    UNION ALL
    SELECT b.attnum, t.typbasetype,
           CASE WHEN t.typtypmod <> -1 THEN t.typtypmod ELSE b.typmod END
    FROM base b JOIN pg_type t ON t.oid = b.type_oid
    WHERE t.typtype = 'd'
)
SELECT c.name, c.nullable, c.declared, t.oid::int8 AS oid, t.typname::text AS typname,
       t.typtype::text AS typtype, b.typmod
FROM cols c
JOIN base b ON b.attnum = c.attnum
JOIN pg_type t ON t.oid = b.type_oid
WHERE t.typtype <> 'd'
ORDER BY c.attnum
"#;

const PRIMARY_KEY_SQL: &str = r#"
SELECT a.attname::text
FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = $1::regclass AND i.indisprimary
"#;

/// Reads a table's columns and maps them; unknown tables and unsupported types are errors.
pub async fn describe(conn: &mut PgConnection, table: &str) -> Result<PgTable, Error> {
    let qualified: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(table)
        .fetch_one(&mut *conn)
        .await
        .map_err(|cause| Error::query(table, "looking the table up", cause))?;
    let Some(qualified) = qualified else {
        return Err(Error::NoSuchTable {
            table: table.to_string(),
        });
    };
    let rows: Vec<(String, bool, String, i64, String, String, i32)> = sqlx::query_as(COLUMNS_SQL)
        .bind(&qualified)
        .fetch_all(&mut *conn)
        .await
        .map_err(|cause| Error::query(table, "reading the column types", cause))?;
    let mut columns = Vec::with_capacity(rows.len());
    for (name, nullable, declared, oid, typname, typtype, typmod) in rows {
        let kind =
            kind_of(oid, &typname, &typtype, typmod).map_err(|reason| Error::UnsupportedType {
                table: table.to_string(),
                column: name.clone(),
                declared: declared.clone(),
                reason,
            })?;
        columns.push(PgColumn {
            name,
            declared,
            kind,
            nullable,
        });
    }
    let keys: Vec<String> = sqlx::query_scalar(PRIMARY_KEY_SQL)
        .bind(&qualified)
        .fetch_all(&mut *conn)
        .await
        .map_err(|cause| Error::query(table, "reading the primary key", cause))?;
    Ok(PgTable {
        name: table.to_string(),
        qualified,
        columns,
        primary_key: (keys.len() == 1).then(|| keys[0].clone()),
    })
}

/// Maps a base type (by OID, name and kind) to how it is decoded; `Err` says why not.
pub fn kind_of(oid: i64, typname: &str, typtype: &str, typmod: i32) -> Result<PgKind, String> {
    Ok(match oid {
        16 => PgKind::Bool,
        21 => PgKind::Int2,
        23 => PgKind::Int4,
        20 => PgKind::Int8,
        700 => PgKind::Float4,
        701 => PgKind::Float8,
        1700 => numeric_kind(typmod)?,
        19 | 25 | 1042 | 1043 => PgKind::Text,
        2950 => PgKind::Uuid,
        114 => PgKind::Json,
        3802 => PgKind::Jsonb,
        17 => PgKind::Bytea,
        1082 => PgKind::Date,
        1083 => PgKind::Time,
        1114 => PgKind::Timestamp,
        1184 => PgKind::TimestampTz,
        _ if typtype == "e" => PgKind::Text,
        _ if typname == "citext" => PgKind::Text,
        _ if typname.starts_with('_') => {
            return Err("arrays are not supported; unnest them in a view".into());
        }
        _ => {
            return Err(format!(
                "type {typname} has no Arrow mapping; cast it in a view (see docs/POSTGRES.md)"
            ));
        }
    })
}

fn numeric_kind(typmod: i32) -> Result<PgKind, String> {
    if typmod < 4 {
        let (precision, scale) = UNCONSTRAINED_NUMERIC;
        return Ok(PgKind::Numeric { precision, scale });
    }
    let precision = ((typmod - 4) >> 16) & 0xffff;
    // The scale is an 11-bit signed number since PostgreSQL 15.
    let raw_scale = (typmod - 4) & 0x7ff;
    let scale = if raw_scale & 0x400 != 0 {
        raw_scale - 0x800
    } else {
        raw_scale
    };
    if precision > 38 {
        return Err(format!(
            "numeric({precision},{scale}) has more than 38 digits, the most Decimal128 holds"
        ));
    }
    if scale < 0 || scale > precision {
        return Err(format!(
            "numeric({precision},{scale}): a negative scale or one above the precision is not supported"
        ));
    }
    Ok(PgKind::Numeric {
        precision: precision as u8,
        scale: scale as i8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typmod(precision: i32, scale: i32) -> i32 {
        ((precision << 16) | (scale & 0x7ff)) + 4
    }

    #[test]
    fn numeric_type_modifiers() {
        assert_eq!(
            kind_of(1700, "numeric", "b", typmod(12, 2)),
            Ok(PgKind::Numeric {
                precision: 12,
                scale: 2
            })
        );
        assert_eq!(
            kind_of(1700, "numeric", "b", -1),
            Ok(PgKind::Numeric {
                precision: 38,
                scale: 9
            })
        );
        let too_wide = kind_of(1700, "numeric", "b", typmod(50, 2)).unwrap_err();
        assert!(too_wide.contains("numeric(50,2)"), "{too_wide}");
        let negative = kind_of(1700, "numeric", "b", typmod(5, -2)).unwrap_err();
        assert!(negative.contains("numeric(5,-2)"), "{negative}");
    }

    #[test]
    fn unsupported_types_say_why() {
        assert!(
            kind_of(1007, "_int4", "b", -1)
                .unwrap_err()
                .contains("arrays")
        );
        assert!(
            kind_of(1186, "interval", "b", -1)
                .unwrap_err()
                .contains("interval")
        );
        assert_eq!(kind_of(99_999, "mood", "e", -1), Ok(PgKind::Text));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("name"), "\"name\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
