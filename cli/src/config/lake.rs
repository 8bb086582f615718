//! The lake's options (`[lake]`): where it is and how to reach S3.

use super::*;

/// Where the lake is. Every option is also a `SHOP_*` variable and a key of `[lake]`.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeArgs {
    /// Lake root: a local folder, a file:// URL or s3://bucket/prefix [default: ./lake-data]
    #[arg(long, env = "SHOP_LAKE", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lake: Option<String>,
    /// S3 endpoint for S3-compatible stores such as MinIO (AWS_ENDPOINT_URL also works).
    #[arg(long, env = "SHOP_S3_ENDPOINT", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// S3 region (AWS_REGION also works).
    #[arg(long, env = "SHOP_S3_REGION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// S3 access key id (AWS_ACCESS_KEY_ID also works). The secret key is read from
    /// SHOP_S3_SECRET_ACCESS_KEY or AWS_SECRET_ACCESS_KEY only, never a flag or the file.
    #[arg(long, env = "SHOP_S3_ACCESS_KEY_ID", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_access_key_id: Option<String>,
    /// Allow plain-HTTP S3 endpoints (MinIO in docker-compose, local tests).
    #[arg(long, env = "SHOP_S3_ALLOW_HTTP", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_allow_http: Option<bool>,
}

impl LakeArgs {
    /// The lake configuration after layering; `default_root` when no lake is given.
    pub fn resolve(&self, file: Option<&Path>, default_root: &str) -> anyhow::Result<LakeConfig> {
        let merged: LakeArgs = layered(file, "lake", self)?;
        let secret = std::env::var("SHOP_S3_SECRET_ACCESS_KEY").ok();
        Ok(LakeConfig {
            root: merged.lake.unwrap_or_else(|| default_root.to_string()),
            s3: S3Config {
                endpoint: merged.s3_endpoint,
                region: merged.s3_region,
                access_key_id: merged.s3_access_key_id,
                secret_access_key: secret,
                allow_http: merged.s3_allow_http.unwrap_or(false),
            },
        })
    }
}
