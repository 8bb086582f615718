//! Snapshot tables and their manifests.
//!
//! A snapshot table (customers, sellers, products) is rewritten as a whole: the writer puts the new
//! files under a fresh folder `<schema>/<table>/<snapshot-id>/`, and only when every file is durable
//! it replaces `_manifest.json` in one PUT (atomic on local disks and on S3). Readers follow the
//! manifest, so they see the old snapshot or the new one, never a mix, and files of an export that
//! died midway are never read. Old snapshot folders stay until removed by a vacuum, so queries that
//! started on the previous snapshot can finish.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout;
use crate::store::Lake;
use crate::writer::WrittenFile;

/// Current manifest format.
pub const FORMAT_VERSION: u32 = 1;

/// The live content of a snapshot table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// Increases by one with every publish.
    pub version: u64,
    pub snapshot_id: String,
    pub committed_at: DateTime<Utc>,
    /// Data files, relative to the table folder.
    pub files: Vec<ManifestFile>,
    /// Writer state carried from one run to the next (for example an incremental watermark).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// One Parquet file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub size: u64,
    pub rows: u64,
}

impl Manifest {
    /// Rows in the snapshot.
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
}

impl ManifestFile {
    /// The file's path from the lake root, given its table.
    pub fn lake_path(&self, schema: &str, table: &str) -> object_store::path::Path {
        self.path
            .split('/')
            .fold(layout::table_dir(schema, table), |dir, part| dir.join(part))
    }
}

/// Reads a table's manifest; `None` when the table has none (an append table, or no table).
pub async fn read(lake: &Lake, schema: &str, table: &str) -> Result<Option<Manifest>> {
    let path = layout::manifest_path(schema, table);
    let bytes = match lake.store().get(&path).await {
        Ok(got) => got.bytes().await.map_err(|e| Error::store(&path, e))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(Error::store(&path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| Error::Manifest {
            path: path.to_string(),
            cause: source,
        })
}

/// Makes `files` (written under `<schema>/<table>/<snapshot_id>/`) the table's live content.
///
/// `expected_version` is the manifest version the writer started from (`None` for a new table);
/// if another writer published in between, nothing is changed and
/// [`Error::ManifestConflict`] is returned.
pub async fn publish(
    lake: &Lake,
    schema: &str,
    table: &str,
    snapshot_id: &str,
    files: &[WrittenFile],
    expected_version: Option<u64>,
    properties: BTreeMap<String, String>,
) -> Result<Manifest> {
    let current = read(lake, schema, table).await?.map(|m| m.version);
    if current != expected_version {
        return Err(Error::ManifestConflict {
            path: layout::manifest_path(schema, table).to_string(),
            expected: expected_version.unwrap_or(0),
        });
    }
    let table_dir = layout::table_dir(schema, table);
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        version: current.map_or(1, |v| v + 1),
        snapshot_id: snapshot_id.to_string(),
        committed_at: Utc::now(),
        files: files
            .iter()
            .map(|f| ManifestFile {
                path: f
                    .path
                    .prefix_match(&table_dir)
                    .map(|parts| {
                        parts
                            .map(|p| p.as_ref().to_string())
                            .collect::<Vec<_>>()
                            .join("/")
                    })
                    .unwrap_or_else(|| f.path.to_string()),
                size: f.size,
                rows: f.rows,
            })
            .collect(),
        properties,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|source| Error::Manifest {
        path: layout::manifest_path(schema, table).to_string(),
        cause: source,
    })?;
    lake.put_bytes(&layout::manifest_path(schema, table), json)
        .await?;
    Ok(manifest)
}

/// A new, sortable snapshot id: UTC time plus a random suffix.
pub fn new_snapshot_id() -> String {
    let now = Utc::now();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "snapshot-{}-{}",
        now.format("%Y%m%dT%H%M%S%3fZ"),
        &suffix[..8]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LakeConfig;
    use object_store::path::Path;

    fn lake() -> (tempfile::TempDir, Lake) {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&LakeConfig {
            root: dir.path().display().to_string(),
            ..Default::default()
        })
        .unwrap();
        (dir, lake)
    }

    fn file(path: &str, rows: u64) -> WrittenFile {
        WrittenFile {
            path: Path::from(path),
            rows,
            size: 10,
        }
    }

    #[tokio::test]
    async fn publish_increments_version_and_stores_relative_paths() {
        let (_dir, lake) = lake();
        assert_eq!(read(&lake, "stage", "customers").await.unwrap(), None);
        let m1 = publish(
            &lake,
            "stage",
            "customers",
            "s1",
            &[file("stage/customers/s1/part-0.parquet", 3)],
            None,
            BTreeMap::new(),
        )
        .await
        .unwrap();
        assert_eq!(m1.version, 1);
        assert_eq!(m1.files[0].path, "s1/part-0.parquet");
        let m2 = publish(
            &lake,
            "stage",
            "customers",
            "s2",
            &[
                file("stage/customers/s2/part-0.parquet", 3),
                file("stage/customers/s2/part-1.parquet", 4),
            ],
            Some(1),
            BTreeMap::from([("watermark".to_string(), "x".to_string())]),
        )
        .await
        .unwrap();
        assert_eq!(m2.version, 2);
        assert_eq!(m2.rows(), 7);
        assert_eq!(read(&lake, "stage", "customers").await.unwrap(), Some(m2));
    }

    #[tokio::test]
    async fn publish_refuses_a_stale_writer() {
        let (_dir, lake) = lake();
        publish(&lake, "stage", "t", "s1", &[], None, BTreeMap::new())
            .await
            .unwrap();
        let err = publish(&lake, "stage", "t", "s2", &[], None, BTreeMap::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ManifestConflict { .. }), "{err}");
        assert_eq!(
            read(&lake, "stage", "t")
                .await
                .unwrap()
                .unwrap()
                .snapshot_id,
            "s1"
        );
    }

    #[tokio::test]
    async fn a_corrupt_manifest_is_a_clear_error() {
        let (_dir, lake) = lake();
        lake.put_bytes(&layout::manifest_path("stage", "t"), b"{not json".to_vec())
            .await
            .unwrap();
        let err = read(&lake, "stage", "t").await.unwrap_err();
        assert!(err.to_string().contains("stage/t/_manifest.json"), "{err}");
    }

    #[test]
    fn snapshot_ids_sort_by_time() {
        let a = new_snapshot_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_snapshot_id();
        assert!(a < b, "{a} < {b}");
    }
}
