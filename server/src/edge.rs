//! What every gRPC call meets first: its credentials and permission, checked by method, and a
//! guard that turns a panic in a handler into INTERNAL instead of a dropped connection.
//!
//! | path | needs |
//! | --- | --- |
//! | `FlightService/Handshake`, `grpc.health.*`, `grpc.reflection.*` | nothing (Handshake checks its own credentials) |
//! | the write methods of the extensions (the shop API's `CreatePurchase`, `CreateSeller`, `UpdateSeller`) | [`Permission::Write`] |
//! | every other call | [`Permission::Read`] |

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::future::BoxFuture;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::metadata::MetadataMap;
use tower::{Layer, Service};

use crate::auth::{Authenticator, Permission, peer_ip};

/// The permission a gRPC method needs, `None` for the open ones; `writes` are the methods that
/// change data.
pub fn permission_for(path: &str, writes: &[&str]) -> Option<Permission> {
    match path {
        "/arrow.flight.protocol.FlightService/Handshake" => None,
        p if p.starts_with("/grpc.health.") || p.starts_with("/grpc.reflection.") => None,
        p if writes.contains(&p) => Some(Permission::Write),
        _ => Some(Permission::Read),
    }
}

/// The layer of [`Edge`].
#[derive(Clone)]
pub struct EdgeLayer {
    auth: Arc<Authenticator>,
    writes: Arc<[&'static str]>,
}

impl EdgeLayer {
    /// `writes`: the methods that need [`Permission::Write`].
    pub fn new(auth: Arc<Authenticator>, writes: Vec<&'static str>) -> Self {
        Self {
            auth,
            writes: writes.into(),
        }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Edge {
            inner,
            auth: Arc::clone(&self.auth),
            writes: Arc::clone(&self.writes),
        }
    }
}

/// Authorization and the panic guard in front of the gRPC services.
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    auth: Arc<Authenticator>,
    writes: Arc<[&'static str]>,
}

impl<S, B> Service<Request<B>> for Edge<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if let Some(need) = permission_for(request.uri().path(), &self.writes) {
            let metadata = MetadataMap::from_headers(request.headers().clone());
            match self
                .auth
                .authorize(&metadata, peer_ip(request.extensions()), need)
            {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                }
                Err(e) => {
                    let response = Status::from(e).into_http();
                    return Box::pin(async move { Ok(response) });
                }
            }
        }
        let path = request.uri().path().to_owned();
        let call = self.inner.call(request);
        Box::pin(AssertUnwindSafe(call).catch_unwind().map(move |outcome| {
            outcome.unwrap_or_else(|_| {
                tracing::error!(%path, "a request handler panicked; answered INTERNAL");
                Ok(Status::internal("the server failed on this request; it is logged").into_http())
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_need_what_they_do() {
        let writes = ["/shop.v1.SellerService/UpdateSeller"];
        let need = |path| permission_for(path, &writes);
        assert_eq!(need("/arrow.flight.protocol.FlightService/Handshake"), None);
        assert_eq!(need("/grpc.health.v1.Health/Check"), None);
        assert_eq!(
            need("/arrow.flight.protocol.FlightService/DoGet"),
            Some(Permission::Read)
        );
        assert_eq!(
            need("/shop.v1.SellerService/UpdateSeller"),
            Some(Permission::Write)
        );
        assert_eq!(
            need("/shop.v1.SellerService/GetSeller"),
            Some(Permission::Read)
        );
        assert_eq!(need("/made.up/Thing"), Some(Permission::Read));
    }
}
