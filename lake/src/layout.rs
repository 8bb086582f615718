//! The lake's layout contract (see `docs/LAKE.md`).
//!
//! ```text
//! <root>/<schema>/<table>/_delta_log/               every table is a Delta table
//! <root>/<schema>/<table>/[dt=YYYY-MM-DD/]*.parquet its data files, named by the log
//! <root>/<schema>/_rejected/<table>/                the dead letters of <table>, a Delta table too
//! ```
//!
//! Names that start with `_` or `.` are never tables or data files: they hold Delta logs and
//! dead letters.

use object_store::path::Path;

/// The catalog and its schemas (stage: what the ingestion workers land; analytics: aggregates
/// computed from the stage; system: shop-analytics' own records), declared in `shop-types`.
pub use shop_types::tables::{ANALYTICS, CATALOG, SCHEMAS, STAGE, SYSTEM};
/// The URL DataFusion knows the lake's object store by.
pub const LAKE_URL: &str = "lake://shop/";

/// True for a valid table (or schema) folder name: `[a-z][a-z0-9_]*`, at most 64 bytes.
pub fn is_table_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 64
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// True for a path segment that is hidden from readers (`_manifest.json`, `.tmp`, `_rejected`).
pub fn is_hidden(segment: &str) -> bool {
    segment.starts_with('_') || segment.starts_with('.')
}

/// True for a file name that is table data: a `.parquet` file whose name is not hidden.
pub fn is_data_file(name: &str) -> bool {
    !is_hidden(name) && name.ends_with(".parquet")
}

/// The folder of a table: `<schema>/<table>`.
pub fn table_dir(schema: &str, table: &str) -> Path {
    Path::from_iter([schema, table])
}

/// Folder of the dead letters of a table: `<schema>/_rejected/<table>`, served as the table
/// `<schema>.<table>_rejected`.
pub fn dead_letter_dir(schema: &str, table: &str) -> Path {
    Path::from_iter([schema, DEAD_LETTERS, table])
}

/// Folder (below a schema) that holds dead letters.
pub const DEAD_LETTERS: &str = "_rejected";
/// Suffix of the table name that serves a table's dead letters.
pub const DEAD_LETTER_SUFFIX: &str = "_rejected";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        assert!(is_table_name("purchases"));
        assert!(is_table_name("daily_sales_2"));
        assert!(!is_table_name("_rejected"));
        assert!(!is_table_name("Purchases"));
        assert!(!is_table_name("9lives"));
        assert!(!is_table_name(""));
        assert!(!is_table_name("a-b"));
        assert!(!is_table_name(&"a".repeat(65)));
    }

    #[test]
    fn partitions_and_hidden_names() {
        assert!(is_hidden("_manifest.json"));
        assert!(is_hidden(".part-0.parquet.tmp"));
        assert!(!is_hidden("part-0.parquet"));
        assert!(is_data_file("part-0.parquet"));
        assert!(!is_data_file(".part-0.parquet"));
        assert!(!is_data_file("_manifest.json"));
        assert!(!is_data_file("_x.parquet"));
        assert!(!is_data_file("notes.txt"));
    }
}
