//! Flight SQL metadata: server capabilities (`GetSqlInfo`), types (`GetXdbcTypeInfo`), the column
//! metadata of `GetTables`, and the key listings BI tools ask for.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use arrow::array::{Int32Builder, RecordBatch, StringBuilder, UInt8Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlOuterJoinsSupportLevel,
    SqlSupportedCaseSensitivity, SqlSupportedGroupBy, SqlSupportedSubqueries,
    SqlSupportedTransaction, SqlSupportedUnions, SqlTransactionIsolationLevel, SupportedSqlGrammar,
    XdbcDataType, XdbcDatetimeSubcode,
};

/// The table type every lake table is reported as (ODBC tools expect `TABLE`).
pub const TABLE_TYPE: &str = "TABLE";
/// Table types, for `GetTableTypes`.
pub const TABLE_TYPES: [&str; 2] = [TABLE_TYPE, "VIEW"];

fn bits(values: &[i32]) -> i32 {
    values.iter().fold(0, |acc, v| acc | (1 << v))
}

/// Everything `GetSqlInfo` reports: the full set of keys JDBC and ODBC drivers read.
pub static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "shop-analytics");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0_i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0_i32);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlKeywords, KEYWORDS);
    b.append(SqlInfo::SqlNumericFunctions, NUMERIC_FUNCTIONS);
    b.append(SqlInfo::SqlStringFunctions, STRING_FUNCTIONS);
    b.append(
        SqlInfo::SqlSystemFunctions,
        &["current_schema", "current_catalog", "version"][..],
    );
    b.append(SqlInfo::SqlDatetimeFunctions, DATETIME_FUNCTIONS);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(
        SqlInfo::SqlSupportsConvert,
        BTreeMap::<i32, Vec<i32>>::new(),
    );
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(
        SqlInfo::SqlSupportedGroupBy,
        bits(&[SqlSupportedGroupBy::SqlGroupByUnrelated as i32]),
    );
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(
        SqlInfo::SqlSupportedGrammar,
        bits(&[
            SupportedSqlGrammar::SqlMinimumGrammar as i32,
            SupportedSqlGrammar::SqlCoreGrammar as i32,
        ]),
    );
    b.append(
        SqlInfo::SqlAnsi92SupportedLevel,
        1_i32, // bit 0: ANSI-92 entry level
    );
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    b.append(
        SqlInfo::SqlOuterJoinsSupportLevel,
        SqlOuterJoinsSupportLevel::SqlFullOuterJoins as i32,
    );
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSchemasSupportedActions, 0_i32);
    b.append(SqlInfo::SqlCatalogsSupportedActions, 0_i32);
    b.append(SqlInfo::SqlSupportedPositionedCommands, 0_i32);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(
        SqlInfo::SqlSupportedSubqueries,
        bits(&[
            SqlSupportedSubqueries::SqlSubqueriesInComparisons as i32,
            SqlSupportedSubqueries::SqlSubqueriesInExists as i32,
            SqlSupportedSubqueries::SqlSubqueriesInIns as i32,
        ]),
    );
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    b.append(
        SqlInfo::SqlSupportedUnions,
        bits(&[
            SqlSupportedUnions::SqlUnion as i32,
            SqlSupportedUnions::SqlUnionAll as i32,
        ]),
    );
    for key in [
        SqlInfo::SqlMaxBinaryLiteralLength,
        SqlInfo::SqlMaxCharLiteralLength,
        SqlInfo::SqlMaxColumnNameLength,
        SqlInfo::SqlMaxColumnsInGroupBy,
        SqlInfo::SqlMaxColumnsInIndex,
        SqlInfo::SqlMaxColumnsInOrderBy,
        SqlInfo::SqlMaxColumnsInSelect,
        SqlInfo::SqlMaxColumnsInTable,
        SqlInfo::SqlMaxConnections,
        SqlInfo::SqlMaxCursorNameLength,
        SqlInfo::SqlMaxIndexLength,
        SqlInfo::SqlDbSchemaNameLength,
        SqlInfo::SqlMaxProcedureNameLength,
        SqlInfo::SqlMaxCatalogNameLength,
        SqlInfo::SqlMaxRowSize,
        SqlInfo::SqlMaxStatements,
        SqlInfo::SqlMaxTableNameLength,
        SqlInfo::SqlMaxTablesInSelect,
        SqlInfo::SqlMaxUsernameLength,
    ] {
        // 0 means "no limit or unknown" in JDBC's DatabaseMetaData.
        b.append(key, 0_i64);
    }
    b.append(
        SqlInfo::SqlMaxStatementLength,
        crate::guard::MAX_SQL_BYTES as i64,
    );
    b.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, true);
    b.append(
        SqlInfo::SqlDefaultTransactionIsolation,
        SqlTransactionIsolationLevel::SqlTransactionNone as i32,
    );
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(
        SqlInfo::SqlSupportedTransactionsIsolationLevels,
        bits(&[SqlTransactionIsolationLevel::SqlTransactionNone as i32]),
    );
    b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, true);
    // Forward-only result sets, read-only concurrency.
    b.append(SqlInfo::SqlSupportedResultSetTypes, 1_i32 << 1);
    b.append(
        SqlInfo::SqlSupportedConcurrenciesForResultSetUnspecified,
        0_i32,
    );
    b.append(
        SqlInfo::SqlSupportedConcurrenciesForResultSetForwardOnly,
        1_i32 << 1,
    );
    b.append(
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollSensitive,
        0_i32,
    );
    b.append(
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollInsensitive,
        0_i32,
    );
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    b.build().expect("static SqlInfo data is valid")
});

const KEYWORDS: &[&str] = &[
    "ANALYZE", "ARRAY", "DESCRIBE", "EXPLAIN", "FILTER", "ILIKE", "LIMIT", "OFFSET", "QUALIFY",
    "SHOW", "TABLES", "UNNEST", "WINDOW",
];
const NUMERIC_FUNCTIONS: &[&str] = &[
    "abs", "acos", "asin", "atan", "atan2", "ceil", "cos", "exp", "floor", "ln", "log", "log10",
    "log2", "pi", "power", "random", "round", "signum", "sin", "sqrt", "tan", "trunc",
];
const STRING_FUNCTIONS: &[&str] = &[
    "ascii",
    "btrim",
    "char_length",
    "concat",
    "concat_ws",
    "initcap",
    "left",
    "length",
    "lower",
    "lpad",
    "ltrim",
    "md5",
    "regexp_like",
    "regexp_replace",
    "repeat",
    "replace",
    "reverse",
    "right",
    "rpad",
    "rtrim",
    "split_part",
    "starts_with",
    "strpos",
    "substr",
    "to_hex",
    "translate",
    "trim",
    "upper",
];
const DATETIME_FUNCTIONS: &[&str] = &[
    "current_date",
    "current_time",
    "date_bin",
    "date_part",
    "date_trunc",
    "extract",
    "now",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_unixtime",
];

fn xdbc(
    name: &str,
    data_type: XdbcDataType,
    column_size: Option<i32>,
    prefix: Option<&str>,
    scale: Option<(i32, i32)>,
    radix: Option<i32>,
    subcode: Option<XdbcDatetimeSubcode>,
) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: name.into(),
        data_type,
        column_size,
        literal_prefix: prefix.map(Into::into),
        literal_suffix: prefix.map(Into::into),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: matches!(data_type, XdbcDataType::XdbcVarchar),
        searchable: Searchable::Full,
        unsigned_attribute: radix.map(|_| false),
        fixed_prec_scale: scale.is_some(),
        auto_increment: Some(false),
        local_type_name: Some(name.into()),
        minimum_scale: scale.map(|s| s.0),
        maximum_scale: scale.map(|s| s.1),
        sql_data_type: data_type,
        datetime_subcode: subcode,
        num_prec_radix: radix,
        interval_precision: None,
    }
}

/// The SQL types the server returns, for `GetXdbcTypeInfo` (ordered by data type, as ODBC wants).
pub static XDBC_TYPES: LazyLock<XdbcTypeInfoData> = LazyLock::new(|| {
    use XdbcDataType as T;
    let mut types = vec![
        xdbc(
            "BIGINT",
            T::XdbcBigint,
            Some(19),
            None,
            None,
            Some(10),
            None,
        ),
        xdbc(
            "TINYINT",
            T::XdbcTinyint,
            Some(3),
            None,
            None,
            Some(10),
            None,
        ),
        xdbc("BOOLEAN", T::XdbcBit, Some(1), None, None, None, None),
        xdbc(
            "BYTEA",
            T::XdbcVarbinary,
            Some(i32::MAX),
            None,
            None,
            None,
            None,
        ),
        xdbc(
            "VARCHAR",
            T::XdbcVarchar,
            Some(i32::MAX),
            Some("'"),
            None,
            None,
            None,
        ),
        xdbc(
            "DECIMAL",
            T::XdbcDecimal,
            Some(38),
            None,
            Some((0, 38)),
            Some(10),
            None,
        ),
        xdbc(
            "INTEGER",
            T::XdbcInteger,
            Some(10),
            None,
            None,
            Some(10),
            None,
        ),
        xdbc(
            "SMALLINT",
            T::XdbcSmallint,
            Some(5),
            None,
            None,
            Some(10),
            None,
        ),
        xdbc("REAL", T::XdbcReal, Some(24), None, None, Some(2), None),
        xdbc("DOUBLE", T::XdbcDouble, Some(53), None, None, Some(2), None),
        xdbc("DATE", T::XdbcDate, Some(10), Some("'"), None, None, None),
        xdbc("TIME", T::XdbcTime, Some(15), Some("'"), None, None, None),
        xdbc(
            "TIMESTAMP",
            T::XdbcTimestamp,
            Some(26),
            Some("'"),
            None,
            None,
            Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
        ),
    ];
    types.sort_by_key(|t| t.data_type as i32);
    let mut b = XdbcTypeInfoDataBuilder::new();
    for t in types {
        b.append(t);
    }
    b.build().expect("static XDBC type data is valid")
});

/// The SQL type name, precision and scale reported for an Arrow type.
pub fn sql_type(ty: &DataType) -> (&'static str, Option<u32>, Option<i32>) {
    match ty {
        DataType::Boolean => ("BOOLEAN", Some(1), None),
        DataType::Int8 => ("TINYINT", Some(3), Some(0)),
        DataType::Int16 | DataType::UInt8 => ("SMALLINT", Some(5), Some(0)),
        DataType::Int32 | DataType::UInt16 => ("INTEGER", Some(10), Some(0)),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => ("BIGINT", Some(19), Some(0)),
        DataType::Float16 | DataType::Float32 => ("REAL", Some(24), None),
        DataType::Float64 => ("DOUBLE", Some(53), None),
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => ("DECIMAL", Some(u32::from(*p)), Some(i32::from(*s))),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ("VARCHAR", None, None),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => ("BYTEA", None, None),
        DataType::Date32 | DataType::Date64 => ("DATE", Some(10), None),
        DataType::Time32(_) | DataType::Time64(_) => ("TIME", Some(15), None),
        DataType::Timestamp(unit, _) => {
            let digits = match unit {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                TimeUnit::Microsecond => 6,
                TimeUnit::Nanosecond => 9,
            };
            ("TIMESTAMP", Some(20 + digits as u32), Some(digits))
        }
        DataType::Interval(_) | DataType::Duration(_) => ("INTERVAL", None, None),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            ("ARRAY", None, None)
        }
        DataType::Struct(_) => ("STRUCT", None, None),
        DataType::Map(..) => ("MAP", None, None),
        _ => ("OTHER", None, None),
    }
}

/// A table schema with the `ARROW:FLIGHT:SQL:*` column metadata JDBC and ADBC tools read.
pub fn schema_with_column_metadata(
    schema: &Schema,
    catalog: &str,
    db_schema: &str,
    table: &str,
) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| {
            let (type_name, precision, scale) = sql_type(field.data_type());
            let mut meta: HashMap<String, String> = field.metadata().clone();
            let mut put = |k: &str, v: String| {
                meta.insert(format!("ARROW:FLIGHT:SQL:{k}"), v);
            };
            put("CATALOG_NAME", catalog.into());
            put("SCHEMA_NAME", db_schema.into());
            put("TABLE_NAME", table.into());
            put("TYPE_NAME", type_name.into());
            if let Some(p) = precision {
                put("PRECISION", p.to_string());
            }
            if let Some(s) = scale {
                put("SCALE", s.to_string());
            }
            put("IS_AUTO_INCREMENT", "0".into());
            put(
                "IS_CASE_SENSITIVE",
                if type_name == "VARCHAR" { "1" } else { "0" }.into(),
            );
            put("IS_READ_ONLY", "1".into());
            put("IS_SEARCHABLE", "1".into());
            field.as_ref().clone().with_metadata(meta)
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// Schema of `GetPrimaryKeys` results, as the Flight SQL specification defines it.
pub fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// Schema of `GetImportedKeys`, `GetExportedKeys` and `GetCrossReference` results.
pub fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

fn matches(filter: Option<&str>, value: &str) -> bool {
    filter.is_none_or(|f| f == value)
}

/// `GetPrimaryKeys` rows for one table.
pub fn primary_keys(
    catalog: Option<&str>,
    db_schema: Option<&str>,
    table: &str,
) -> arrow::error::Result<RecordBatch> {
    let (mut cat, mut sch, mut tab, mut col, mut name, mut seq) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        Int32Builder::new(),
    );
    if matches(catalog, shop_lake::layout::CATALOG) {
        // Keys are declared once, with the tables, in `shop-types`.
        for t in &shop_types::TABLES {
            if t.name == table && matches(db_schema, t.schema) {
                for (i, c) in t.primary_key.iter().enumerate() {
                    cat.append_value(shop_lake::layout::CATALOG);
                    sch.append_value(t.schema);
                    tab.append_value(t.name);
                    col.append_value(c);
                    name.append_value(format!("{}_pkey", t.name));
                    seq.append_value(i as i32 + 1);
                }
            }
        }
    }
    RecordBatch::try_new(
        primary_keys_schema(),
        vec![
            Arc::new(cat.finish()),
            Arc::new(sch.finish()),
            Arc::new(tab.finish()),
            Arc::new(col.finish()),
            Arc::new(name.finish()),
            Arc::new(seq.finish()),
        ],
    )
}

/// Foreign-key rows: `pk` filters the referenced table, `fk` the referencing one, each as
/// (catalog, schema, table) with `None` for "any".
pub fn foreign_keys(
    pk: Option<(Option<&str>, Option<&str>, &str)>,
    fk: Option<(Option<&str>, Option<&str>, &str)>,
) -> arrow::error::Result<RecordBatch> {
    let keep = |filter: Option<(Option<&str>, Option<&str>, &str)>, schema: &str, table: &str| {
        filter.is_none_or(|(c, s, t)| {
            matches(c, shop_lake::layout::CATALOG) && matches(s, schema) && t == table
        })
    };
    let mut text: Vec<StringBuilder> = (0..10).map(|_| StringBuilder::new()).collect();
    let mut seq = Int32Builder::new();
    let (mut update, mut delete) = (UInt8Builder::new(), UInt8Builder::new());
    let mut declared: Vec<_> = shop_types::TABLES
        .iter()
        .flat_map(|t| {
            t.foreign_keys.iter().map(|k| {
                let r = k.references;
                (
                    t.schema,
                    t.name,
                    k.column,
                    r.schema,
                    r.name,
                    k.referenced_column(),
                )
            })
        })
        .collect();
    // The order the specification gives: imported keys by the referenced table, the others by
    // the referencing table.
    if pk.is_none() {
        declared.sort_by_key(|&(_, _, fc, ps, pt, _)| (ps, pt, fc));
    } else {
        declared.sort_by_key(|&(fs, ft, fc, ..)| (fs, ft, fc));
    }
    for (fs, ft, fc, ps, pt, pc) in declared {
        if !(keep(pk, ps, pt) && keep(fk, fs, ft)) {
            continue;
        }
        let row = [
            Some(shop_lake::layout::CATALOG.to_string()),
            Some(ps.to_string()),
            Some(pt.to_string()),
            Some(pc.to_string()),
            Some(shop_lake::layout::CATALOG.to_string()),
            Some(fs.to_string()),
            Some(ft.to_string()),
            Some(fc.to_string()),
            Some(format!("{ft}_{fc}_fkey")),
            Some(format!("{pt}_pkey")),
        ];
        for (builder, value) in text.iter_mut().zip(row) {
            builder.append_option(value);
        }
        seq.append_value(1);
        // 3 = NO ACTION in the Flight SQL UpdateDeleteRules enum.
        update.append_value(3);
        delete.append_value(3);
    }
    let mut text = text.into_iter().map(|mut b| Arc::new(b.finish()) as _);
    let mut columns: Vec<arrow::array::ArrayRef> =
        (0..8).map(|_| text.next().expect("8")).collect();
    columns.push(Arc::new(seq.finish()));
    columns.extend(text);
    columns.push(Arc::new(update.finish()));
    columns.push(Arc::new(delete.finish()));
    RecordBatch::try_new(foreign_keys_schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_info_has_the_keys_jdbc_reads() {
        let batch = SQL_INFO.record_batch(Vec::<u32>::new()).unwrap();
        // JDBC reads every key from 0 to 576 that the spec defines; all of them must answer.
        assert!(batch.num_rows() >= 80, "{} keys", batch.num_rows());
        let one = SQL_INFO
            .record_batch([SqlInfo::SqlSupportsIntegrityEnhancementFacility as u32])
            .unwrap();
        assert_eq!(one.num_rows(), 1);
    }

    #[test]
    fn xdbc_types_cover_the_lake_types() {
        let all = XDBC_TYPES.record_batch(None).unwrap();
        assert_eq!(all.num_rows(), 13);
        let decimals = XDBC_TYPES
            .record_batch(XdbcDataType::XdbcDecimal as i32)
            .unwrap();
        assert_eq!(decimals.num_rows(), 1);
    }

    #[test]
    fn column_metadata() {
        let schema = Schema::new(vec![Field::new(
            "price",
            DataType::Decimal128(12, 2),
            false,
        )]);
        let with = schema_with_column_metadata(&schema, "shop", "stage", "products");
        let meta = with.field(0).metadata();
        assert_eq!(meta["ARROW:FLIGHT:SQL:TYPE_NAME"], "DECIMAL");
        assert_eq!(meta["ARROW:FLIGHT:SQL:PRECISION"], "12");
        assert_eq!(meta["ARROW:FLIGHT:SQL:SCALE"], "2");
        assert_eq!(meta["ARROW:FLIGHT:SQL:TABLE_NAME"], "products");
    }

    #[test]
    fn keys() {
        let pk = primary_keys(None, None, "customers").unwrap();
        assert_eq!(pk.num_rows(), 1);
        assert_eq!(
            primary_keys(Some("other"), None, "customers")
                .unwrap()
                .num_rows(),
            0
        );
        let imported = foreign_keys(None, Some((None, Some("stage"), "purchases"))).unwrap();
        assert_eq!(imported.num_rows(), 3);
        let exported = foreign_keys(Some((Some("shop"), None, "sellers")), None).unwrap();
        assert_eq!(exported.num_rows(), 2);
        let cross = foreign_keys(
            Some((None, None, "sellers")),
            Some((None, None, "products")),
        )
        .unwrap();
        assert_eq!(cross.num_rows(), 1);
        assert_eq!(cross.schema(), foreign_keys_schema());
    }
}
