//! The read-only SQL policy.
//!
//! Every SQL text is parsed here before DataFusion plans it. Only one statement per request, and
//! only queries: `SELECT`/`WITH`/`VALUES`, `EXPLAIN` of a query, `SHOW TABLES`/`SHOW COLUMNS`,
//! `DESCRIBE`. Everything else (DDL, DML, `COPY`, `CREATE EXTERNAL TABLE`, `SET`, transactions)
//! is refused with [`Error::Forbidden`], and so is any table name that looks like a file path or
//! URL. The planner then checks the plan once more with DataFusion's `SQLOptions` (no DDL, DML or
//! statements), and the session's object-store registry knows no store but the lake.
//!
//! Before anything is parsed, the text's operators are counted (see [`MAX_SQL_OPERATORS`]):
//! a left-deep chain such as `1+1+…+1` or a long `UNION ALL` is parsed without recursion but
//! becomes a tree as deep as it is long, which every later step (planning, optimising,
//! evaluating, dropping) walks recursively. Nesting in parentheses, calls and subqueries is
//! bounded by the parser's recursion limit.
//!
//! `?` placeholders (JDBC/ODBC style) are rewritten to `$1, $2, …` in order of appearance, so
//! both styles bind positionally.

use std::ops::ControlFlow;

use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    Expr, ObjectName, ObjectNamePart, Statement, Value, visit_expressions_mut, visit_relations,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::Error;

/// The largest SQL text accepted.
pub const MAX_SQL_BYTES: usize = 1 << 20;

/// Operators (arithmetic, comparison, `AND`/`OR`, `||`, casts, `IS`, `UNION`, `JOIN`, …) one
/// statement may contain. Each level of a chain needs one, so this bounds the depth of every
/// tree the statement becomes; real queries, even generated ones, use far fewer.
pub const MAX_SQL_OPERATORS: usize = 4_096;

/// Tables, views and table functions one statement may name.
pub const MAX_SQL_RELATIONS: usize = 1_000;

/// Parses `sql` and checks that it is one read-only statement.
pub fn check(sql: &str) -> Result<DfStatement, Error> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(Error::InvalidRequest(format!(
            "the SQL text is {} bytes; the limit is {MAX_SQL_BYTES}",
            sql.len()
        )));
    }
    check_operators(sql)?;
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(&GenericDialect {})
        .build()
        .and_then(|mut parser| parser.parse_statements())
        .map_err(Error::Sql)?;
    let mut statement = match statements.len() {
        0 => {
            return Err(Error::InvalidRequest(
                "the SQL text contains no statement".into(),
            ));
        }
        1 => statements.pop_front().expect("one statement"),
        n => {
            return Err(Error::InvalidRequest(format!(
                "send one statement per request; this text contains {n}"
            )));
        }
    };
    check_statement(&statement)?;
    rewrite_question_marks(&mut statement);
    Ok(statement)
}

/// Refuses a text with more than [`MAX_SQL_OPERATORS`] operators, before it is parsed.
fn check_operators(sql: &str) -> Result<(), Error> {
    // A text that does not tokenize is left to the parser, which says why.
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return Ok(());
    };
    let operators = tokens.iter().filter(|t| is_operator(t)).count();
    if operators > MAX_SQL_OPERATORS {
        return Err(Error::InvalidRequest(format!(
            "the statement is too complex: it has {operators} operators (arithmetic, \
             comparisons, AND/OR, ||, casts, field access, UNION, JOIN, …); the limit is {MAX_SQL_OPERATORS}. \
             Use IN (…) lists, CASE or a table instead of long chains"
        )));
    }
    Ok(())
}

/// True for a token that joins or wraps expressions or queries, so that a chain of them nests.
fn is_operator(token: &Token) -> bool {
    match token {
        Token::Word(word) => matches!(
            word.keyword,
            Keyword::AND
                | Keyword::OR
                | Keyword::XOR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::IN
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::REGEXP
                | Keyword::RLIKE
                | Keyword::BETWEEN
                | Keyword::COLLATE
                | Keyword::AT
                | Keyword::DIV
                | Keyword::UNION
                | Keyword::INTERSECT
                | Keyword::EXCEPT
                | Keyword::JOIN
                | Keyword::OVERLAPS
        ),
        Token::EOF
        | Token::Number(..)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::QuoteDelimitedStringLiteral(_)
        | Token::NationalQuoteDelimitedStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::Comma
        | Token::Whitespace(_)
        | Token::LParen
        | Token::RParen
        | Token::SemiColon
        | Token::Placeholder(_)
        | Token::Colon => false,
        _ => true,
    }
}

fn forbidden(what: impl Into<String>) -> Error {
    Error::Forbidden(format!(
        "{} is not allowed: this server is read-only and runs queries only (SELECT, WITH, \
         EXPLAIN, SHOW, DESCRIBE)",
        what.into()
    ))
}

fn check_statement(statement: &DfStatement) -> Result<(), Error> {
    match statement {
        DfStatement::Statement(inner) => check_sql_statement(inner),
        DfStatement::Explain(explain) => check_statement(&explain.statement),
        DfStatement::CreateExternalTable(_) => Err(forbidden("CREATE EXTERNAL TABLE")),
        DfStatement::CopyTo(_) => Err(forbidden("COPY")),
        DfStatement::Reset(_) => Err(forbidden("RESET")),
    }
}

fn check_sql_statement(statement: &Statement) -> Result<(), Error> {
    match statement {
        Statement::Query(_)
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ExplainTable { .. } => check_relations(statement),
        Statement::Explain { statement, .. } => check_sql_statement(statement),
        other => Err(forbidden(statement_kind(other))),
    }
}

/// The statement's leading keywords, for messages: `INSERT`, `CREATE OR REPLACE VIEW`, `SET`.
fn statement_kind(statement: &Statement) -> String {
    const OBJECTS: [&str; 14] = [
        "TABLE",
        "VIEW",
        "INDEX",
        "SCHEMA",
        "DATABASE",
        "FUNCTION",
        "SEQUENCE",
        "TYPE",
        "ROLE",
        "USER",
        "EXTENSION",
        "TRIGGER",
        "PROCEDURE",
        "MACRO",
    ];
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(6).collect();
    match words.as_slice() {
        [first, rest @ ..] if matches!(*first, "CREATE" | "DROP" | "ALTER" | "TRUNCATE") => {
            let end = rest
                .iter()
                .position(|w| OBJECTS.contains(w))
                .map_or(0, |i| i + 1);
            std::iter::once(*first)
                .chain(rest[..end].iter().copied())
                .collect::<Vec<_>>()
                .join(" ")
        }
        [first, ..] => first.to_string(),
        [] => "this statement".into(),
    }
}

/// Refuses table names that are file paths or URLs (`SELECT * FROM '/etc/passwd'`), and more
/// than [`MAX_SQL_RELATIONS`] of them.
fn check_relations(statement: &Statement) -> Result<(), Error> {
    let mut count = 0_usize;
    let found = visit_relations(statement, |name: &ObjectName| {
        count += 1;
        if looks_like_a_location(name) {
            ControlFlow::Break(Error::Forbidden(format!(
                "{name} looks like a file path or URL; reading files or URLs through SQL is not \
                 allowed. Query the lake's tables instead, for example shop.stage.purchases"
            )))
        } else if count > MAX_SQL_RELATIONS {
            ControlFlow::Break(Error::InvalidRequest(format!(
                "the statement is too complex: it names more than {MAX_SQL_RELATIONS} tables"
            )))
        } else {
            ControlFlow::Continue(())
        }
    });
    match found {
        ControlFlow::Break(error) => Err(error),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn looks_like_a_location(name: &ObjectName) -> bool {
    name.0.iter().any(|part| match part {
        ObjectNamePart::Identifier(ident) => {
            let v = &ident.value;
            ident.quote_style == Some('\'')
                || v.contains('/')
                || v.contains('\\')
                || v.contains("://")
                || v.contains('~')
        }
        ObjectNamePart::Function(_) => false,
    })
}

fn rewrite_question_marks(statement: &mut DfStatement) {
    let mut next = 0_usize;
    let mut rewrite = |expr: &mut Expr| {
        if let Expr::Value(v) = expr
            && let Value::Placeholder(p) = &mut v.value
            && p == "?"
        {
            next += 1;
            *p = format!("${next}");
        }
        ControlFlow::<()>::Continue(())
    };
    match statement {
        DfStatement::Statement(inner) => {
            let _ = visit_expressions_mut(inner.as_mut(), &mut rewrite);
        }
        DfStatement::Explain(explain) => {
            if let DfStatement::Statement(inner) = explain.statement.as_mut() {
                let _ = visit_expressions_mut(inner.as_mut(), &mut rewrite);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> String {
        match check(sql) {
            Err(Error::Forbidden(msg)) => msg,
            other => panic!("{sql:?} should be forbidden, got {other:?}"),
        }
    }

    #[test]
    fn queries_are_allowed() {
        for sql in [
            "SELECT 1",
            "select * from purchases where dt = DATE '2026-01-01'",
            "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
            "EXPLAIN SELECT * FROM shop.stage.customers",
            "EXPLAIN ANALYZE SELECT count(*) FROM purchases",
            "SHOW TABLES",
            "SHOW COLUMNS FROM purchases",
            "DESCRIBE purchases",
            "VALUES (1), (2)",
            "SELECT * FROM (SELECT 1) AS \"quoted alias\"",
        ] {
            check(sql).unwrap_or_else(|e| panic!("{sql:?} should be allowed: {e}"));
        }
    }

    #[test]
    fn writes_and_statements_are_forbidden() {
        for (sql, word) in [
            ("INSERT INTO purchases VALUES (1)", "INSERT"),
            ("UPDATE customers SET name = 'x'", "UPDATE"),
            ("DELETE FROM customers", "DELETE"),
            ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
            ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
            (
                "CREATE OR REPLACE VIEW v AS SELECT 1",
                "CREATE OR REPLACE VIEW",
            ),
            ("CREATE UNIQUE INDEX i ON t (a)", "CREATE UNIQUE INDEX"),
            ("DROP VIEW IF EXISTS v", "DROP VIEW"),
            (
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/'",
                "CREATE EXTERNAL TABLE",
            ),
            ("DROP TABLE purchases", "DROP TABLE"),
            ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            ("COPY purchases TO '/tmp/x.parquet'", "COPY"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            ("RESET datafusion.execution.batch_size", "RESET"),
            ("EXPLAIN ANALYZE INSERT INTO purchases VALUES (1)", "INSERT"),
            ("EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            ("CREATE SCHEMA s", "CREATE SCHEMA"),
            ("TRUNCATE TABLE purchases", "TRUNCATE"),
            ("BEGIN TRANSACTION", "BEGIN"),
        ] {
            let msg = refused(sql);
            assert!(msg.contains(word), "{sql:?}: {msg}");
            assert!(msg.contains("read-only"), "{sql:?}: {msg}");
        }
    }

    #[test]
    fn files_and_urls_are_not_tables() {
        for sql in [
            "SELECT * FROM '/etc/passwd'",
            "SELECT * FROM 'data.parquet'",
            "SELECT * FROM \"/etc/passwd\"",
            "SELECT * FROM \"s3://bucket/x.parquet\"",
            "SELECT * FROM purchases p JOIN '/tmp/x.csv' x ON true",
            "SELECT * FROM purchases WHERE customer_id IN (SELECT * FROM '~/x.csv')",
            "DESCRIBE '/etc/passwd'",
        ] {
            let msg = refused(sql);
            assert!(msg.contains("file path or URL"), "{sql:?}: {msg}");
        }
    }

    #[test]
    fn one_statement_per_request() {
        let err = check("SELECT 1; SELECT 2").unwrap_err();
        assert!(
            matches!(err, Error::InvalidRequest(ref m) if m.contains("one statement")),
            "{err:?}"
        );
        assert!(matches!(check("  ").unwrap_err(), Error::InvalidRequest(_)));
        assert!(matches!(check("SELEC 1").unwrap_err(), Error::Sql(_)));
        let huge = format!("SELECT '{}'", "x".repeat(MAX_SQL_BYTES));
        assert!(matches!(
            check(&huge).unwrap_err(),
            Error::InvalidRequest(_)
        ));
    }

    /// Runs `f` on a thread with the stack of a query thread, as the server does.
    fn on_query_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(crate::executor::QUERY_THREAD_STACK)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn long_chains_are_too_complex_before_they_are_parsed() {
        on_query_stack(long_chains);
    }

    fn long_chains() {
        let chain = |op: &str, term: &str, n: usize| {
            format!("SELECT {}", vec![term; n].join(&format!(" {op} ")))
        };
        for sql in [
            chain("+", "1", 2_000),
            chain("OR", "true", 2_000),
            chain("||", "'a'", 2_000),
            format!("SELECT 1{}", "::BIGINT".repeat(1_000)),
            vec!["SELECT 1"; 1_000].join(" UNION ALL "),
        ] {
            check(&sql).unwrap_or_else(|e| panic!("{}…: {e}", &sql[..40]));
        }
        for sql in [
            chain("+", "1", MAX_SQL_OPERATORS + 2),
            chain("AND", "true", 5_000),
            chain("||", "'a'", 100_000),
            format!("SELECT 1{}", "::BIGINT".repeat(5_000)),
            vec!["SELECT 1"; 10_000].join(" UNION ALL "),
            format!("SELECT 1 {}", "IS NULL ".repeat(5_000)),
            // Each `.` of a field chain nests one more field access.
            format!("SELECT q.s{} FROM t q", ".a".repeat(5_000)),
        ] {
            match check(&sql) {
                Err(Error::InvalidRequest(m)) => assert!(m.contains("too complex"), "{m}"),
                other => panic!("{}…: {other:?}", &sql[..40]),
            }
        }
        // Operators inside strings and comments do not count.
        let quoted = format!("SELECT '{}' -- {}", "+".repeat(10_000), "+".repeat(10_000));
        check(&quoted).unwrap();
    }

    #[test]
    fn too_many_tables_are_too_complex() {
        let from: Vec<String> = (0..=MAX_SQL_RELATIONS).map(|i| format!("t{i}")).collect();
        let sql = format!("SELECT 1 FROM {}", from.join(", "));
        match check(&sql) {
            Err(Error::InvalidRequest(m)) => assert!(m.contains("tables"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn question_marks_become_numbered_placeholders() {
        let stmt = check("SELECT * FROM t WHERE a = ? AND b IN (?, ?) AND c = $9").unwrap();
        let text = stmt.to_string();
        assert!(text.contains("a = $1"), "{text}");
        assert!(text.contains("IN ($2, $3)"), "{text}");
        assert!(text.contains("c = $9"), "{text}");
    }
}
