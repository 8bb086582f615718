//! Opening the lake's object store from configuration.

use std::sync::Arc;

use datafusion::execution::object_store::ObjectStoreRegistry;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};
use crate::layout::{self, LAKE_URL};
use crate::sorted::SortedListing;

/// Where the lake is and how to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LakeConfig {
    /// A local folder, a `file://` URL or `s3://bucket/prefix`.
    pub root: String,
    /// S3 settings, used when `root` is an `s3://` URL.
    #[serde(default)]
    pub s3: S3Config,
}

/// S3 / MinIO connection settings. Unset values fall back to the standard `AWS_*` variables.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Config {
    /// Endpoint URL for S3-compatible servers (MinIO, s3s-fs); unset for AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow plain `http://` endpoints (MinIO on a private network, local tests).
    #[serde(default)]
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// An opened lake: the object store rooted at the lake's root.
///
/// Paths given to [`Lake::store`] are relative to the root (`stage/customers/_manifest.json`).
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    location: String,
    /// What Delta writes keep between them: the tables written, the write session.
    pub(crate) delta_cache: Arc<crate::delta::WriteCache>,
}

impl Lake {
    /// Opens (and for a local folder, creates) the lake described by `config`.
    pub fn open(config: &LakeConfig) -> Result<Self> {
        let root = config.root.trim();
        if root.is_empty() {
            return Err(invalid(root, "the lake root is empty"));
        }
        if let Some(rest) = root.strip_prefix("s3://") {
            return Self::open_s3(root, rest, &config.s3);
        }
        let path = match root.strip_prefix("file://") {
            Some(path) => std::path::PathBuf::from(path),
            None if root.contains("://") => {
                return Err(invalid(
                    root,
                    "only local folders, file:// and s3:// URLs are supported",
                ));
            }
            None => std::path::PathBuf::from(root),
        };
        std::fs::create_dir_all(&path).map_err(|source| Error::LocalFolder {
            path: path.display().to_string(),
            cause: source,
        })?;
        let path = std::fs::canonicalize(&path).map_err(|source| Error::LocalFolder {
            path: path.display().to_string(),
            cause: source,
        })?;
        let store =
            LocalFileSystem::new_with_prefix(&path).map_err(|e| Error::store(path.display(), e))?;
        let store = SortedListing::new(store);
        Ok(Self {
            store: Arc::new(store),
            location: path.display().to_string(),
            delta_cache: Default::default(),
        })
    }

    fn open_s3(root: &str, rest: &str, s3: &S3Config) -> Result<Self> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid(root, "s3:// URL without a bucket"));
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = &s3.endpoint {
            // S3-compatible servers are addressed path-style: http://host:port/bucket/key.
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let Some(region) = &s3.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &s3.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &s3.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if s3.allow_http {
            builder = builder.with_allow_http(true);
        }
        let s3_store = builder.build().map_err(|e| Error::store(root, e))?;
        let prefix = prefix.trim_matches('/');
        // S3 lists keys in order, but S3-compatible servers need not: sorted here, as the Delta
        // log's readers need it.
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(SortedListing::new(s3_store))
        } else {
            Arc::new(SortedListing::new(PrefixStore::new(
                s3_store,
                Path::from(prefix),
            )))
        };
        Ok(Self {
            store,
            location: root.trim_end_matches('/').to_string(),
            delta_cache: Default::default(),
        })
    }

    /// The object store, rooted at the lake root.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Where the lake is, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The URL DataFusion uses for a path inside the lake (`lake://shop/<path>`).
    pub fn url_of(path: &Path) -> String {
        format!("{LAKE_URL}{path}")
    }

    /// True when no table has any file yet (a fresh lake).
    pub async fn is_empty(&self) -> Result<bool> {
        for schema in layout::SCHEMAS {
            let prefix = Path::from(schema);
            let listing = self
                .store
                .list_with_delimiter(Some(&prefix))
                .await
                .map_err(|e| Error::store(&prefix, e))?;
            if !listing.common_prefixes.is_empty() || !listing.objects.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Checks that the store answers (a list on the root), for a clear error at start-up.
    pub async fn check_reachable(&self) -> Result<()> {
        self.store
            .list_with_delimiter(None)
            .await
            .map(|_| ())
            .map_err(|e| Error::store(&self.location, e))
    }

    /// Writes a small object in one request (atomic on every supported store).
    pub async fn put_bytes(&self, path: &Path, bytes: impl Into<bytes::Bytes>) -> Result<()> {
        self.store
            .put(path, bytes.into().into())
            .await
            .map(|_| ())
            .map_err(|e| Error::store(path, e))
    }

    /// A registry for DataFusion that knows only this lake: SQL can reach no other store,
    /// in particular not the server's own file system through `file://`.
    pub fn registry(&self) -> Arc<dyn ObjectStoreRegistry> {
        Arc::new(LakeOnlyRegistry {
            store: Arc::clone(&self.store),
        })
    }
}

fn invalid(location: &str, reason: &str) -> Error {
    Error::InvalidLocation {
        location: location.to_string(),
        reason: reason.to_string(),
    }
}

/// [`ObjectStoreRegistry`] that resolves `lake://shop/` and refuses every other URL.
#[derive(Debug)]
struct LakeOnlyRegistry {
    store: Arc<dyn ObjectStore>,
}

impl ObjectStoreRegistry for LakeOnlyRegistry {
    fn register_store(
        &self,
        url: &Url,
        _store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        tracing::warn!(%url, "ignored an attempt to register another object store");
        None
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        if url.scheme() == "lake" && url.host_str() == Some("shop") {
            Ok(Arc::clone(&self.store))
        } else {
            Err(datafusion::error::DataFusionError::Plan(format!(
                "access to {}://{} is not allowed: only the shop's lake tables can be read",
                url.scheme(),
                url.host_str().unwrap_or("")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_schemes_and_empty_roots() {
        let err = Lake::open(&LakeConfig {
            root: "gs://bucket".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("only local folders"), "{err}");
        assert!(Lake::open(&LakeConfig::default()).is_err());
        assert!(
            Lake::open(&LakeConfig {
                root: "s3://".into(),
                ..Default::default()
            })
            .unwrap_err()
            .to_string()
            .contains("without a bucket")
        );
    }

    #[test]
    fn secrets_are_not_printed() {
        let cfg = S3Config {
            secret_access_key: Some("hunter2".into()),
            ..Default::default()
        };
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn local_lake_is_created_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lake");
        let lake = Lake::open(&LakeConfig {
            root: format!("file://{}", root.display()),
            ..Default::default()
        })
        .unwrap();
        assert!(root.is_dir());
        assert!(lake.is_empty().await.unwrap());
        lake.put_bytes(&Path::from("stage/t/x.parquet"), b"x".to_vec())
            .await
            .unwrap();
        assert!(!lake.is_empty().await.unwrap());
    }

    #[test]
    fn registry_refuses_other_urls() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&LakeConfig {
            root: dir.path().display().to_string(),
            ..Default::default()
        })
        .unwrap();
        let registry = lake.registry();
        assert!(
            registry
                .get_store(&Url::parse("lake://shop/stage/x").unwrap())
                .is_ok()
        );
        let err = registry
            .get_store(&Url::parse("file:///etc/passwd").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("not allowed"), "{err}");
    }
}
