//! The lake's record of a partition's progress: the offsets marker
//! (`stage/purchases/_offsets/<topic>/<p>.json`), read and written conditionally, and the names
//! of the objects a flush writes.

use std::time::Duration;

use chrono::Utc;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, UpdateVersion};
use serde::{Deserialize, Serialize};
use shop_lake::{Lake, layout};

use super::{Error, Result, TABLE};

/// The per-partition progress marker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// Every message below this offset is in the lake (as a purchase or a dead letter).
    pub next_offset: i64,
    /// Files of a flush that had started but not finished.
    #[serde(default)]
    pub pending: Vec<String>,
    /// Data files written in the last [`DEDUP_WINDOW`] (path, unix seconds): their purchase_ids
    /// are the ones a new owner of the partition checks repeats against.
    #[serde(default)]
    pub recent: Vec<(String, i64)>,
}

/// How long after its first copy a repeated purchase_id is still recognised (by ingest time).
pub const DEDUP_WINDOW: Duration = Duration::from_secs(15 * 60);

pub(super) fn unix_now() -> i64 {
    Utc::now().timestamp()
}

pub fn marker_path(topic: &str, partition: i32) -> Path {
    layout::table_dir(layout::STAGE, TABLE)
        .join("_offsets")
        .join(topic)
        .join(format!("{partition}.json"))
}

/// The name of the objects a flush writes: unique per topic, partition and offset range. Only
/// characters that object_store keeps as they are (Kafka topics are `[a-zA-Z0-9._-]`), so listed
/// names compare equal to built ones.
pub fn object_name(topic: &str, partition: i32, start: i64, end: i64) -> String {
    format!("part+{topic}+{partition}+{start:020}+{end:020}.parquet")
}

pub fn rejected_dir() -> Path {
    layout::dead_letter_dir(layout::STAGE, TABLE)
}

pub async fn read_marker(lake: &Lake, topic: &str, partition: i32) -> Result<Option<Marker>> {
    Ok(read_marker_versioned(lake, topic, partition)
        .await?
        .map(|(marker, _)| marker))
}

/// The marker and the version it was read at (for the conditional write that follows).
pub(super) async fn read_marker_versioned(
    lake: &Lake,
    topic: &str,
    partition: i32,
) -> Result<Option<(Marker, UpdateVersion)>> {
    let path = marker_path(topic, partition);
    match lake.store().get(&path).await {
        Ok(got) => {
            let version = UpdateVersion {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            let bytes = got
                .bytes()
                .await
                .map_err(|e| shop_lake::Error::store(&path, e))?;
            serde_json::from_slice(&bytes)
                .map(|marker| Some((marker, version)))
                .map_err(|source| Error::Marker {
                    path: path.to_string(),
                    source,
                })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(shop_lake::Error::store(&path, e).into()),
    }
}

/// Writes the marker only if it is still at `expected` (`None`: it must not exist yet), so a
/// worker that lost its partition to another cannot overwrite the new owner's progress.
/// `Ok(None)` when another writer changed it. Stores without conditional updates (the local
/// file system) are overwritten instead: there, one worker per lake is assumed.
pub(super) async fn write_marker(
    lake: &Lake,
    topic: &str,
    partition: i32,
    marker: &Marker,
    expected: Option<&UpdateVersion>,
) -> Result<Option<UpdateVersion>> {
    let path = marker_path(topic, partition);
    let json = serde_json::to_vec(marker).expect("a marker serialises");
    let mode = match expected {
        Some(v) => PutMode::Update(v.clone()),
        None => PutMode::Create,
    };
    let put = |mode| {
        lake.store()
            .put_opts(&path, json.clone().into(), PutOptions::from(mode))
    };
    let result = match put(mode).await {
        Err(object_store::Error::NotImplemented { .. }) => put(PutMode::Overwrite).await,
        other => other,
    };
    match result {
        Ok(done) => Ok(Some(UpdateVersion {
            e_tag: done.e_tag,
            version: done.version,
        })),
        Err(
            object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. },
        ) => Ok(None),
        Err(e) => Err(shop_lake::Error::store(&path, e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_survive_the_store_path_encoding() {
        let name = object_name("shop.purchases-v1_x", 3, 0, 12_345);
        let path = Path::from("stage/purchases/dt=2026-11-25").join(name.as_str());
        assert_eq!(path.filename(), Some(name.as_str()));
        assert!(layout::is_data_file(&name));
    }
}
