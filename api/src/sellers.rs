//! `shop.v1.SellerService`: sellers in PostgreSQL, the operational store (the lake's
//! `stage.sellers` is its export by `shop-analytics ingest postgres`).

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, QueryBuilder};
use tonic::{Request, Response, Status};

use crate::pb::seller_service_server::SellerService;
use crate::pb::{
    CreateSellerRequest, CreateSellerResponse, GetSellerRequest, GetSellerResponse,
    ListSellersRequest, ListSellersResponse, Seller, UpdateSellerRequest, UpdateSellerResponse,
};
use crate::{decimal, decode_token, encode_token, page_size, positive, postgres_error, timestamp};

const TOKEN: &str = "sellers";
/// Longest name and city.
pub const MAX_TEXT_CHARS: usize = 200;
const COLUMNS: &str = "seller_id, name, email::text AS email, city, country, \
                       rating::text AS rating, commission_rate::text AS commission_rate, \
                       is_verified, created_at, updated_at";

/// `shop.v1.SellerService`; without PostgreSQL every call is `FAILED_PRECONDITION`.
#[derive(Clone)]
pub struct SellerApi {
    postgres: Option<PgPool>,
}

#[derive(sqlx::FromRow)]
struct Row {
    seller_id: i64,
    name: String,
    email: Option<String>,
    city: Option<String>,
    country: String,
    rating: Option<String>,
    commission_rate: String,
    is_verified: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Row> for Seller {
    fn from(r: Row) -> Self {
        Seller {
            seller_id: r.seller_id,
            name: r.name,
            email: r.email.unwrap_or_default(),
            city: r.city.unwrap_or_default(),
            country: r.country,
            rating: r.rating.unwrap_or_default(),
            commission_rate: r.commission_rate,
            is_verified: r.is_verified,
            created_at: Some(timestamp(r.created_at.timestamp_micros())),
            updated_at: Some(timestamp(r.updated_at.timestamp_micros())),
        }
    }
}

/// PostgreSQL text cannot hold NUL.
fn no_nul(field: &str, text: &str) -> Result<(), Status> {
    if text.contains('\0') {
        return Err(Status::invalid_argument(format!(
            "{field} must not contain NUL characters"
        )));
    }
    Ok(())
}

fn name(text: &str) -> Result<String, Status> {
    no_nul("name", text)?;
    let chars = text.chars().count();
    if text.trim().is_empty() || chars > MAX_TEXT_CHARS {
        return Err(Status::invalid_argument(format!(
            "name must be 1 to {MAX_TEXT_CHARS} characters and not blank, got {chars} characters"
        )));
    }
    Ok(text.to_string())
}

/// `None` for "", as the column is nullable.
fn email(text: &str) -> Result<Option<String>, Status> {
    if text.is_empty() {
        return Ok(None);
    }
    no_nul("email", text)?;
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(Status::invalid_argument(format!(
            "email must be at most {MAX_TEXT_CHARS} characters"
        )));
    }
    let valid = text.split('@').count() == 2
        && !text.starts_with('@')
        && !text.ends_with('@')
        && !text.chars().any(char::is_whitespace);
    if !valid {
        return Err(Status::invalid_argument(format!(
            "email {text:?} is not an e-mail address (one @ with something on both sides, no \
             spaces)"
        )));
    }
    Ok(Some(text.to_string()))
}

fn city(text: &str) -> Result<Option<String>, Status> {
    no_nul("city", text)?;
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(Status::invalid_argument(format!(
            "city must be at most {MAX_TEXT_CHARS} characters"
        )));
    }
    Ok((!text.is_empty()).then(|| text.to_string()))
}

fn country(text: &str) -> Result<String, Status> {
    if text.len() == 2 && text.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(text.to_string())
    } else {
        Err(Status::invalid_argument(format!(
            "country {text:?} is not an ISO 3166-1 alpha-2 code such as \"DE\""
        )))
    }
}

/// A decimal 0 to `max` (one integer digit).
fn bounded(field: &str, text: &str, scale: usize, max: f64) -> Result<Option<String>, Status> {
    let value = decimal(field, text, 1, scale)?;
    if let Some(v) = &value
        && v.parse::<f64>().is_ok_and(|v| v > max)
    {
        return Err(Status::invalid_argument(format!(
            "{field} must be between 0 and {max}, got {v}"
        )));
    }
    Ok(value)
}

fn rating(text: &str) -> Result<Option<String>, Status> {
    bounded("rating", text, 2, 5.0)
}

fn commission_rate(text: &str) -> Result<Option<String>, Status> {
    bounded("commission_rate", text, 4, 1.0)
}

/// A database constraint refusing a value we let through is still the client's error, named
/// by the field its constraint is about.
fn write_error(e: sqlx::Error) -> Status {
    if let sqlx::Error::Database(db) = &e
        && (db.is_check_violation() || db.code().as_deref() == Some("23514"))
    {
        let constraint = db.constraint().unwrap_or_default();
        let field = [
            "commission_rate",
            "rating",
            "country",
            "email",
            "name",
            "city",
        ]
        .into_iter()
        .find(|f| constraint.contains(f))
        .unwrap_or("a field");
        return Status::invalid_argument(format!(
            "{field} was refused by PostgreSQL: {}",
            db.message()
        ));
    }
    postgres_error(e)
}

impl SellerApi {
    pub fn new(postgres: Option<PgPool>) -> Self {
        Self { postgres }
    }

    fn pool(&self) -> Result<&PgPool, Status> {
        self.postgres.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "sellers live in PostgreSQL: start the server with --pg-url",
            )
        })
    }

    async fn fetch(&self, id: i64) -> Result<Seller, Status> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM sellers WHERE seller_id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool()?)
        .await
        .map_err(postgres_error)?;
        row.map(Seller::from)
            .ok_or_else(|| Status::not_found(format!("no seller with seller_id {id}")))
    }
}

#[tonic::async_trait]
impl SellerService for SellerApi {
    async fn create_seller(
        &self,
        request: Request<CreateSellerRequest>,
    ) -> Result<Response<CreateSellerResponse>, Status> {
        let r = request.into_inner();
        let name = name(&r.name)?;
        let email = email(&r.email)?;
        let city = city(&r.city)?;
        let country = country(&r.country)?;
        let rating = rating(&r.rating)?;
        let commission = commission_rate(&r.commission_rate)?.unwrap_or_else(|| "0.1000".into());
        let row: Row = sqlx::query_as(&format!(
            "INSERT INTO sellers (name, email, city, country, rating, commission_rate, \
             is_verified) VALUES ($1, $2, $3, $4, $5::numeric, $6::numeric, $7) \
             RETURNING {COLUMNS}"
        ))
        .bind(name)
        .bind(email)
        .bind(city)
        .bind(country)
        .bind(rating)
        .bind(commission)
        .bind(r.is_verified)
        .fetch_one(self.pool()?)
        .await
        .map_err(write_error)?;
        tracing::info!(seller_id = row.seller_id, "seller created");
        Ok(Response::new(CreateSellerResponse {
            seller: Some(row.into()),
        }))
    }

    async fn get_seller(
        &self,
        request: Request<GetSellerRequest>,
    ) -> Result<Response<GetSellerResponse>, Status> {
        let id = positive("seller_id", request.into_inner().seller_id)?;
        Ok(Response::new(GetSellerResponse {
            seller: Some(self.fetch(id).await?),
        }))
    }

    async fn list_sellers(
        &self,
        request: Request<ListSellersRequest>,
    ) -> Result<Response<ListSellersResponse>, Status> {
        let r = request.into_inner();
        let page = page_size(r.page_size)?;
        let country = (!r.country.is_empty())
            .then(|| country(&r.country))
            .transpose()?;
        let after = if r.page_token.is_empty() {
            0
        } else {
            let parts = decode_token(TOKEN, &r.page_token)?;
            let bad = || Status::invalid_argument("page_token belongs to another country filter");
            if parts.len() != 2 || parts[0] != r.country {
                return Err(bad());
            }
            parts[1].parse::<i64>().map_err(|_| bad())?
        };
        let mut query: QueryBuilder<Postgres> =
            QueryBuilder::new(format!("SELECT {COLUMNS} FROM sellers WHERE seller_id > "));
        query.push_bind(after);
        if let Some(country) = country {
            query.push(" AND country = ").push_bind(country);
        }
        query
            .push(" ORDER BY seller_id LIMIT ")
            .push_bind(page as i64 + 1);
        let rows: Vec<Row> = query
            .build_query_as()
            .fetch_all(self.pool()?)
            .await
            .map_err(postgres_error)?;
        let mut sellers: Vec<Seller> = rows.into_iter().map(Seller::from).collect();
        let next_page_token = if sellers.len() > page {
            sellers.truncate(page);
            let last = sellers.last().map_or(0, |s| s.seller_id).to_string();
            encode_token(TOKEN, &[&r.country, &last])
        } else {
            String::new()
        };
        Ok(Response::new(ListSellersResponse {
            sellers,
            next_page_token,
        }))
    }

    async fn update_seller(
        &self,
        request: Request<UpdateSellerRequest>,
    ) -> Result<Response<UpdateSellerResponse>, Status> {
        let r = request.into_inner();
        let id = positive("seller_id", r.seller_id)?;
        let mut query: QueryBuilder<Postgres> = QueryBuilder::new("UPDATE sellers SET ");
        let mut set = query.separated(", ");
        let mut changed = 0;
        if let Some(v) = &r.name {
            set.push("name = ").push_bind_unseparated(name(v)?);
            changed += 1;
        }
        if let Some(v) = &r.email {
            set.push("email = ").push_bind_unseparated(email(v)?);
            changed += 1;
        }
        if let Some(v) = &r.city {
            set.push("city = ").push_bind_unseparated(city(v)?);
            changed += 1;
        }
        if let Some(v) = &r.country {
            set.push("country = ").push_bind_unseparated(country(v)?);
            changed += 1;
        }
        if let Some(v) = &r.rating {
            set.push("rating = ")
                .push_bind_unseparated(rating(v)?)
                .push_unseparated("::numeric");
            changed += 1;
        }
        if let Some(v) = &r.commission_rate {
            let rate = commission_rate(v)?.ok_or_else(|| {
                Status::invalid_argument("commission_rate cannot be cleared; give a value 0 to 1")
            })?;
            set.push("commission_rate = ")
                .push_bind_unseparated(rate)
                .push_unseparated("::numeric");
            changed += 1;
        }
        if let Some(v) = r.is_verified {
            set.push("is_verified = ").push_bind_unseparated(v);
            changed += 1;
        }
        if changed == 0 {
            return Err(Status::invalid_argument(
                "an update must set at least one of name, email, city, country, rating, \
                 commission_rate, is_verified",
            ));
        }
        query.push(" WHERE seller_id = ").push_bind(id);
        query.push(format!(" RETURNING {COLUMNS}"));
        let row: Option<Row> = query
            .build_query_as()
            .fetch_optional(self.pool()?)
            .await
            .map_err(write_error)?;
        let seller = row
            .map(Seller::from)
            .ok_or_else(|| Status::not_found(format!("no seller with seller_id {id}")))?;
        Ok(Response::new(UpdateSellerResponse {
            seller: Some(seller),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_rule_names_its_field() {
        assert!(name("Ann's Books").is_ok());
        assert_eq!(email("").unwrap(), None);
        assert_eq!(email("a@b.c").unwrap().as_deref(), Some("a@b.c"));
        assert_eq!(rating("4.5").unwrap().as_deref(), Some("4.50"));
        assert_eq!(commission_rate("0.15").unwrap().as_deref(), Some("0.1500"));
        let cases: [(&str, Result<(), Status>); 15] = [
            ("name", name("a\0b").map(drop)),
            ("email", email("a\0@b").map(drop)),
            ("city", city("x\0").map(drop)),
            ("name", name("").map(drop)),
            ("name", name("   ").map(drop)),
            ("name", name(&"x".repeat(201)).map(drop)),
            ("email", email("no-at-sign").map(drop)),
            ("email", email("a@b@c").map(drop)),
            ("email", email("a b@c").map(drop)),
            ("city", city(&"x".repeat(201)).map(drop)),
            ("country", country("de").map(drop)),
            ("country", country("DEU").map(drop)),
            ("rating", rating("5.01").map(drop)),
            ("rating", rating("4.555").map(drop)),
            ("commission_rate", commission_rate("1.5").map(drop)),
        ];
        for (field, result) in cases {
            let err = result.expect_err(field);
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(
                err.message().starts_with(field),
                "{field}: {}",
                err.message()
            );
        }
    }
}
