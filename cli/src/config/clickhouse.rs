//! ClickHouse (`[clickhouse]`): where the aggregates and the purchases stream go.

use super::*;

/// Where ClickHouse is. Also `SHOP_CLICKHOUSE_*` variables and keys of `[clickhouse]`; the
/// password only comes from `SHOP_CLICKHOUSE_PASSWORD`.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP URL, e.g. http://localhost:8123; without it aggregates go to the lake only
    #[arg(long, env = "SHOP_CLICKHOUSE_URL", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clickhouse_url: Option<String>,
    /// ClickHouse user [default: default]
    #[arg(long, env = "SHOP_CLICKHOUSE_USER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clickhouse_user: Option<String>,
    /// ClickHouse database of the tables (created if missing) [default: shop]
    #[arg(long, env = "SHOP_CLICKHOUSE_DATABASE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clickhouse_database: Option<String>,
    /// Longest a ClickHouse statement or insert may take [default: 300]
    #[arg(long, env = "SHOP_CLICKHOUSE_TIMEOUT_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clickhouse_timeout_secs: Option<u64>,
}

impl ClickHouseArgs {
    /// The ClickHouse settings after layering; `None` without a URL.
    pub fn resolve(
        &self,
        file: Option<&Path>,
    ) -> anyhow::Result<Option<shop_aggregates::clickhouse::ClickHouseConfig>> {
        let merged: ClickHouseArgs = layered(file, "clickhouse", self)?;
        let Some(url) = merged.clickhouse_url else {
            return Ok(None);
        };
        let mut config = shop_aggregates::clickhouse::ClickHouseConfig::new(url);
        if let Some(user) = merged.clickhouse_user {
            config.user = user;
        }
        if let Some(database) = merged.clickhouse_database {
            config.database = database;
        }
        if let Some(secs) = merged.clickhouse_timeout_secs {
            config.timeout = Duration::from_secs(secs.max(1));
        }
        config.password = std::env::var("SHOP_CLICKHOUSE_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty());
        Ok(Some(config))
    }
}
