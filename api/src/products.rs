//! `shop.v1.ProductService`: products of `stage.products`, read with DataFusion.
//!
//! Point lookups (GetProduct, and CreatePurchase's check) are answered from an id → product
//! map built from the catalogue with one scan, and rebuilt when the catalog serves a new
//! snapshot of the table (a new catalogue load): a lookup costs a hash probe instead of a
//! planned query. Listings run as DataFusion queries.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Decimal128Array, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::Int64Type;
use datafusion::catalog::TableProvider;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use shop_lake::{Lake, LakeCatalog};
use tonic::{Request, Response, Status};

use crate::pb::product_service_server::ProductService;
use crate::pb::{
    GetProductRequest, GetProductResponse, ListProductsRequest, ListProductsResponse, Product,
};
use crate::{
    Filter, Limits, collect, context, decimal, decode_token, encode_token, internal, page_size,
    positive, timestamp,
};

const TOKEN: &str = "after";
/// The columns of a product, in the order `to_products` reads them.
use shop_types::tables::PRODUCTS;

/// `shop.v1.ProductService` over the lake.
#[derive(Clone)]
pub struct ProductApi {
    ctx: SessionContext,
    limits: Limits,
    index: Arc<tokio::sync::Mutex<Option<Index>>>,
}

/// Every product by id, and the table provider (the snapshot) it was built from.
struct Index {
    provider: Arc<dyn TableProvider>,
    by_id: HashMap<i64, Product>,
}

impl ProductApi {
    /// Reads through `catalog` (the server's, so new catalogue loads are seen without a
    /// restart).
    pub fn new(lake: &Lake, catalog: &Arc<LakeCatalog>) -> Self {
        Self::with_limits(lake, catalog, Limits::default())
    }

    /// [`ProductApi::new`] with its queries bounded by `limits`.
    pub fn with_limits(lake: &Lake, catalog: &Arc<LakeCatalog>, limits: Limits) -> Self {
        Self {
            ctx: context(lake, catalog, &limits),
            limits,
            index: Arc::default(),
        }
    }

    async fn require_catalogue(&self) -> Result<(), Status> {
        if crate::table_exists(&self.ctx, "products").await? {
            Ok(())
        } else {
            Err(Status::failed_precondition(
                "stage.products does not exist yet: load the catalogue with \
                 `shop-analytics ingest products FILE`",
            ))
        }
    }

    /// The product with `product_id`, `None` if the catalogue has none.
    pub async fn lookup(&self, product_id: i64) -> Result<Option<Product>, Status> {
        self.require_catalogue().await?;
        let provider = self
            .ctx
            .table_provider("shop.stage.products")
            .await
            .map_err(|e| internal("opening stage.products", e))?;
        let mut index = self.index.lock().await;
        if !index
            .as_ref()
            .is_some_and(|i| Arc::ptr_eq(&i.provider, &provider))
        {
            // A new snapshot (or the first lookup): one scan of exactly that snapshot.
            let frame = self
                .ctx
                .read_table(Arc::clone(&provider))
                .and_then(|frame| {
                    let columns = PRODUCTS.column_names();
                    frame.select_columns(&columns.iter().map(String::as_str).collect::<Vec<_>>())
                })
                .map_err(|e| internal("reading stage.products", e))?;
            let batches = collect(frame, &self.limits, "reading stage.products").await?;
            let mut products = Vec::new();
            for batch in &batches {
                products.extend(to_products(batch).map_err(Status::internal)?);
            }
            tracing::debug!(products = products.len(), "product index rebuilt");
            *index = Some(Index {
                provider,
                by_id: products.into_iter().map(|p| (p.product_id, p)).collect(),
            });
        }
        Ok(index
            .as_ref()
            .and_then(|i| i.by_id.get(&product_id))
            .cloned())
    }

    async fn products(&self, filter: Filter, limit: usize) -> Result<Vec<Product>, Status> {
        self.require_catalogue().await?;
        let columns = PRODUCTS.column_names().join(", ");
        let frame = filter
            .select(
                &self.ctx,
                &columns,
                "shop.stage.products",
                "product_id",
                limit,
            )
            .await
            .map_err(|e| internal("reading stage.products", e))?;
        let batches = collect(frame, &self.limits, "reading stage.products").await?;
        let mut products = Vec::new();
        for batch in &batches {
            products.extend(to_products(batch).map_err(Status::internal)?);
        }
        Ok(products)
    }
}

fn to_products(batch: &RecordBatch) -> Result<Vec<Product>, String> {
    let ids = batch
        .column(0)
        .as_primitive_opt::<Int64Type>()
        .ok_or("product_id is not an Int64")?;
    let sellers = batch
        .column(1)
        .as_primitive_opt::<Int64Type>()
        .ok_or("seller_id is not an Int64")?;
    let names = batch
        .column(2)
        .as_string_opt::<i32>()
        .ok_or("name is not a string")?;
    let categories = batch
        .column(3)
        .as_string_opt::<i32>()
        .ok_or("category is not a string")?;
    let prices = batch
        .column(4)
        .as_any()
        .downcast_ref::<Decimal128Array>()
        .ok_or("price is not a decimal")?;
    let created = batch
        .column(5)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or("created_at is not a timestamp")?;
    Ok((0..batch.num_rows())
        .map(|i| Product {
            product_id: ids.value(i),
            seller_id: sellers.value(i),
            name: names.value(i).to_string(),
            category: categories.value(i).to_string(),
            price: prices.value_as_string(i),
            created_at: created.is_valid(i).then(|| timestamp(created.value(i))),
        })
        .collect())
}

#[tonic::async_trait]
impl ProductService for ProductApi {
    async fn get_product(
        &self,
        request: Request<GetProductRequest>,
    ) -> Result<Response<GetProductResponse>, Status> {
        let id = positive("product_id", request.into_inner().product_id)?;
        match self.lookup(id).await? {
            Some(product) => Ok(Response::new(GetProductResponse {
                product: Some(product),
            })),
            None => Err(Status::not_found(format!(
                "no product with product_id {id}"
            ))),
        }
    }

    async fn list_products(
        &self,
        request: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        let r = request.into_inner();
        let page = page_size(r.page_size)?;
        if r.seller_id < 0 {
            return Err(Status::invalid_argument(format!(
                "seller_id must be positive (or 0 for every seller), got {}",
                r.seller_id
            )));
        }
        let min = decimal("min_price", &r.min_price, 10, 2)?;
        let max = decimal("max_price", &r.max_price, 10, 2)?;
        if let (Some(min), Some(max)) = (&min, &max)
            && min.parse::<f64>().unwrap_or(0.0) > max.parse::<f64>().unwrap_or(0.0)
        {
            return Err(Status::invalid_argument(format!(
                "min_price {min} is above max_price {max}"
            )));
        }
        let mut filter = Filter::default();
        if !r.page_token.is_empty() {
            let parts = decode_token(TOKEN, &r.page_token)?;
            let after: i64 = parts[0].parse().map_err(|_| {
                Status::invalid_argument("page_token is not a token this service issued")
            })?;
            let p = filter.param(ScalarValue::Int64(Some(after)));
            filter.and(format!("product_id > {p}"));
        }
        if r.seller_id > 0 {
            let p = filter.param(ScalarValue::Int64(Some(r.seller_id)));
            filter.and(format!("seller_id = {p}"));
        }
        for (bound, op) in [(&min, ">="), (&max, "<=")] {
            if let Some(text) = bound {
                let p = filter.param(price(text)?);
                filter.and(format!("price {op} {p}"));
            }
        }
        if !r.category.is_empty() {
            let p = filter.param(ScalarValue::Utf8(Some(r.category.clone())));
            filter.and(format!("category = {p}"));
        }
        let mut products = self.products(filter, page + 1).await?;
        let next_page_token = if products.len() > page {
            products.truncate(page);
            let last = products.last().map_or(0, |p| p.product_id);
            encode_token(TOKEN, &[&last.to_string()])
        } else {
            String::new()
        };
        Ok(Response::new(ListProductsResponse {
            products,
            next_page_token,
        }))
    }
}

/// A validated price bound (digits, at most 2 decimals) as the lake's money type.
fn price(text: &str) -> Result<ScalarValue, Status> {
    let cents =
        shop_types::purchases::parse_price(&serde_json::Value::String(text.into()), "price")
            .map_err(Status::invalid_argument)?;
    Ok(ScalarValue::Decimal128(Some(cents), 12, 2))
}
