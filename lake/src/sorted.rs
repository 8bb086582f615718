//! A local folder whose listings come back sorted.
//!
//! Object stores do not promise an order, but S3 and the other clouds list keys
//! lexicographically, and Delta readers rely on it: the log's commits must come in version order.
//! delta-rs sorts a local listing itself only when the table's URL is `file://`; the lake's tables
//! are `lake://shop/…` on every store, so the lake's store sorts what it lists (local folders
//! list in directory order, and S3-compatible servers need not sort either).

use std::fmt;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// `inner`, with [`ObjectStore::list`] and [`ObjectStore::list_with_offset`] sorted by path.
#[derive(Debug)]
pub struct SortedListing<T> {
    inner: T,
}

impl<T> SortedListing<T> {
    pub fn new(inner: T) -> Self {
        Self { inner }
    }
}

impl<T: fmt::Display> fmt::Display for SortedListing<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SortedListing({})", self.inner)
    }
}

fn sorted(
    listing: BoxStream<'static, Result<ObjectMeta>>,
) -> BoxStream<'static, Result<ObjectMeta>> {
    stream::once(async move {
        let mut all: Vec<ObjectMeta> = listing.try_collect().await?;
        all.sort_unstable_by(|a, b| a.location.cmp(&b.location));
        Ok::<_, object_store::Error>(stream::iter(all.into_iter().map(Ok)))
    })
    .try_flatten()
    .boxed()
}

#[async_trait]
impl<T: ObjectStore> ObjectStore for SortedListing<T> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        sorted(self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        sorted(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut listing = self.inner.list_with_delimiter(prefix).await?;
        listing
            .objects
            .sort_unstable_by(|a, b| a.location.cmp(&b.location));
        listing.common_prefixes.sort_unstable();
        Ok(listing)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::local::LocalFileSystem;

    #[tokio::test]
    async fn listings_come_back_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = SortedListing::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        // Created in a scrambled order, so that no directory order can pass for a sorted one.
        let names: Vec<String> = (0..40)
            .map(|i| format!("log/{:020}.json", (i * 17) % 40))
            .collect();
        for name in &names {
            store
                .put(&Path::from(name.as_str()), Bytes::from("x").into())
                .await
                .unwrap();
        }
        let listed: Vec<String> = store
            .list(Some(&Path::from("log")))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        let mut expected = names.clone();
        expected.sort();
        assert_eq!(listed, expected);
        let from_ten: Vec<String> = store
            .list_with_offset(Some(&Path::from("log")), &Path::from(expected[9].as_str()))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(from_ten, expected[10..]);
    }
}
