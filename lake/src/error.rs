//! Errors of the lake crate.

/// Errors raised while opening, reading or writing the lake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid lake location {location:?}: {reason}")]
    InvalidLocation { location: String, reason: String },

    #[error("object store error at {path}: {cause}")]
    Store {
        path: String,
        cause: object_store::Error,
    },

    #[error("cannot create lake folder {path}: {cause}")]
    LocalFolder { path: String, cause: std::io::Error },

    #[error("invalid table name {name:?}: table names are lower-case letters, digits and '_'")]
    InvalidTableName { name: String },

    #[error("parquet error writing {path}: {cause}")]
    Parquet {
        path: String,
        cause: parquet::errors::ParquetError,
    },

    #[error("Delta table at {table}: {cause}")]
    Delta {
        table: String,
        cause: Box<deltalake::errors::DeltaTableError>,
    },

    #[error(
        "{table} holds {file} from an older lake layout, so it cannot become a Delta table: \
         convert the lake first (`shop-analytics lake convert`, not built yet) or move the old \
         files away"
    )]
    OldLayout { table: String, file: String },

    #[error(
        "another writer committed {app_id} to {table} (at version {found:?}; this writer expected \
         {expected:?}): its source partition is owned by another worker now"
    )]
    Fenced {
        table: String,
        app_id: String,
        expected: Option<i64>,
        found: Option<i64>,
    },

    #[error(
        "another writer committed to {table} after version {base}, which this snapshot replaces; \
         nothing was changed (run it again to start from the new version)"
    )]
    SnapshotConflict { table: String, base: u64 },

    #[error("Delta table at {table}: {message}")]
    DeltaState { table: String, message: String },

    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

/// Result with the lake's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn delta(dir: impl std::fmt::Display, source: deltalake::errors::DeltaTableError) -> Self {
        Self::Delta {
            table: dir.to_string(),
            cause: Box::new(source),
        }
    }

    pub fn delta_message(dir: impl std::fmt::Display, message: impl Into<String>) -> Self {
        Self::DeltaState {
            table: dir.to_string(),
            message: message.into(),
        }
    }

    /// True when a commit lost to another writer's: a concurrent commit of the same
    /// application transaction, or one that changed what this commit was based on.
    pub fn is_conflict(&self) -> bool {
        match self {
            Self::Fenced { .. } | Self::SnapshotConflict { .. } => true,
            Self::Delta { cause, .. } => matches!(
                cause.as_ref(),
                deltalake::errors::DeltaTableError::VersionAlreadyExists(_)
                    | deltalake::errors::DeltaTableError::Transaction {
                        source: deltalake::kernel::transaction::TransactionError::CommitConflict(_)
                            | deltalake::kernel::transaction::TransactionError::VersionAlreadyExists(
                                _
                            )
                    }
            ),
            _ => false,
        }
    }

    pub fn store(path: impl std::fmt::Display, source: object_store::Error) -> Self {
        Self::Store {
            path: path.to_string(),
            cause: source,
        }
    }
}
