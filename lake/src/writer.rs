//! Streaming Parquet writes into the lake.
//!
//! Files are written through `object_store` multipart uploads, so memory stays bounded by the
//! row group being built, and a file becomes visible only when its upload completes.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::store::Lake;

/// Rows per Parquet row group: large enough for good compression and scans, small enough that a
/// writer holds a bounded amount of memory.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;

/// A Parquet file that has been completely written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    pub path: Path,
    pub rows: u64,
    pub size: u64,
}

/// Writer settings for every Parquet file in the lake: zstd, bounded row groups, statistics.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid zstd level"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(concat!("shop-analytics ", env!("CARGO_PKG_VERSION")).to_string())
        .build()
}

/// One Parquet file being written.
pub struct ParquetFile {
    path: Path,
    writer: AsyncArrowWriter<BufWriter>,
    rows: u64,
}

impl ParquetFile {
    /// Starts a file at `path` (relative to the lake root).
    pub fn create(lake: &Lake, path: Path, schema: SchemaRef) -> Result<Self> {
        let object = BufWriter::new(Arc::clone(lake.store()), path.clone());
        let writer = AsyncArrowWriter::try_new(object, schema, Some(writer_properties())).map_err(
            |source| Error::Parquet {
                path: path.to_string(),
                cause: source,
            },
        )?;
        Ok(Self {
            path,
            writer,
            rows: 0,
        })
    }

    /// Appends a batch.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer
            .write(batch)
            .await
            .map_err(|source| Error::Parquet {
                path: self.path.to_string(),
                cause: source,
            })?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Finishes the file: after this returns, it is durable in the store.
    pub async fn finish(mut self) -> Result<WrittenFile> {
        // Writes the footer and completes the upload; the size then counts every byte.
        self.writer
            .finish()
            .await
            .map_err(|source| Error::Parquet {
                path: self.path.to_string(),
                cause: source,
            })?;
        let size = self.writer.bytes_written() as u64;
        Ok(WrittenFile {
            path: self.path,
            rows: self.rows,
            size,
        })
    }

    /// Abandons the file: the multipart upload is aborted, nothing becomes visible.
    pub async fn abort(self) {
        let path = self.path.clone();
        let mut object = self.writer.into_inner();
        if let Err(e) = object.abort().await {
            tracing::warn!(%path, cause = %e, "could not abort an unfinished upload");
        }
    }
}

/// Writes `batches` as one Parquet file at `path`.
pub async fn write_file(
    lake: &Lake,
    path: Path,
    schema: SchemaRef,
    batches: &[RecordBatch],
) -> Result<WrittenFile> {
    let mut file = ParquetFile::create(lake, path, schema)?;
    for batch in batches {
        file.write(batch).await?;
    }
    file.finish().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn the_recorded_size_is_the_whole_object_footer_included() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&crate::LakeConfig {
            root: dir.path().display().to_string(),
            ..Default::default()
        })
        .unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from_iter_values(0..10_000))],
        )
        .unwrap();
        let path = Path::from("stage/t/part-0.parquet");
        let written = write_file(&lake, path.clone(), schema, &[batch])
            .await
            .unwrap();
        let head = lake.store().head(&path).await.unwrap();
        assert_eq!(written.size, head.size);
        assert_eq!(written.rows, 10_000);
    }
}
