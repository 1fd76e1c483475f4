//! `GET /api/v1/users.presence` answered before actix's router.
//!
//! That one request is what every open tab repeats every few seconds, and most
//! of its answers are a cached body or a `304`. Routed, it passes the `/api/v1`
//! scope, the resource's method guards and three extractors, and that work was
//! the largest part of what a quiet poll cost beyond writing its bytes (see
//! BENCHMARKS.md). This middleware takes exactly that method on exactly that
//! path and calls [`presence::answer_get`], the code the routed handler calls
//! too; every other request, including any other spelling of the path, goes to
//! the router unchanged, so the router stays the one authority on everything
//! else. It sits inside [`Observe`](crate::http::observe::Observe), so head
//! limits, metrics (labelled by the resource the path names) and logs are as
//! for any request.
//!
//! It is on only while cross-origin access is off: with CORS on, every answer
//! of the public API must pass the CORS layers of its scope.

use super::presence;
use crate::http::AppState;
use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::Method;
use actix_web::{web, Error, HttpResponse};
use futures_util::future::LocalBoxFuture;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The path taken, byte for byte: also the name of the resource routed there.
pub const PATH: &str = "/api/v1/users.presence";

/// The middleware's factory: one per application, shared by its workers.
#[derive(Clone)]
pub struct FastPath {
    state: web::Data<AppState>,
    on: bool,
}

impl FastPath {
    /// The fast path to `state`'s answers; `on` false passes every request on.
    pub fn new(state: web::Data<AppState>, on: bool) -> FastPath {
        FastPath { state, on }
    }
}

impl<S, B> Transform<S, ServiceRequest> for FastPath
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = FastPathMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<FastPathMiddleware<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(FastPathMiddleware {
            service,
            factory: self.clone(),
        }))
    }
}

/// The middleware of one worker.
pub struct FastPathMiddleware<S> {
    service: S,
    factory: FastPath,
}

impl<S, B> Service<ServiceRequest> for FastPathMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = Answering<S::Future>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        if !(self.factory.on && req.method() == Method::GET && req.path() == PATH) {
            return Answering::Routed {
                answer: self.service.call(req),
            };
        }
        // A GET has no body to keep: the request alone answers it.
        let (req, _) = req.into_parts();
        let state = self.factory.state.clone();
        Answering::Fast {
            answer: Box::pin(async move {
                let response = presence::answer_get(&req, &state)
                    .await
                    .unwrap_or_else(HttpResponse::from_error);
                ServiceResponse::new(req, response)
            }),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request in flight, on one way or the other.
    #[project = AnsweringProj]
    pub enum Answering<F> {
        Fast { answer: LocalBoxFuture<'static, ServiceResponse<BoxBody>> },
        Routed { #[pin] answer: F },
    }
}

impl<F, B> Future for Answering<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
    B: MessageBody,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AnsweringProj::Fast { answer } => answer
                .as_mut()
                .poll(cx)
                .map(|res| Ok(res.map_into_right_body())),
            AnsweringProj::Routed { answer } => answer
                .poll(cx)
                .map(|res| res.map(ServiceResponse::map_into_left_body)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SCOPE;
    use crate::metrics::Metrics;
    use crate::store::{Store, StoreOptions};
    use actix_web::test::{call_service, init_service, TestRequest};
    use actix_web::App;
    use std::sync::Arc;
    use std::time::Duration;

    #[actix_web::test]
    async fn only_a_get_of_exactly_the_path_is_taken_and_only_while_on() {
        let store = Store::new(&StoreOptions::default());
        let metrics = Arc::new(Metrics::new(store.clone()).expect("metrics register"));
        let state = web::Data::new(AppState::new(
            store,
            Duration::from_secs(600),
            100,
            1024,
            None,
            metrics,
        ));
        let cases = [
            (true, Method::GET, "/api/v1/users.presence", true),
            (true, Method::GET, "/api/v1/users.presence?ids=a", true),
            (true, Method::POST, "/api/v1/users.presence", false),
            (true, Method::HEAD, "/api/v1/users.presence", false),
            (true, Method::GET, "/api/v1/users.presence/", false),
            (true, Method::GET, "/api/v1/Users.presence", false),
            (true, Method::GET, "/api/v1/users%2Epresence", false),
            (true, Method::GET, "/api/v1/users.getStatus", false),
            (false, Method::GET, "/api/v1/users.presence", false),
        ];
        for (on, method, uri, taken) in cases {
            // The router stands in as a teapot: anything not taken reaches it.
            let app = init_service(
                App::new()
                    .wrap(FastPath::new(state.clone(), on))
                    .default_service(web::to(HttpResponse::ImATeapot)),
            )
            .await;
            let request = TestRequest::default().method(method.clone()).uri(uri);
            let answer = call_service(&app, request.to_request()).await;
            // Taken, it is presence's answer to a request without credentials.
            let expected = if taken { 401 } else { 418 };
            assert_eq!(answer.status().as_u16(), expected, "{on} {method} {uri}");
        }
    }

    #[test]
    fn the_path_is_the_routed_resource_of_users_presence() {
        // Observe labels fast-path requests by PATH, routed ones by the resource's
        // name: one route, one label, only while the two spell the same.
        assert_eq!(PATH, format!("{SCOPE}{}", crate::api::PRESENCE));
    }
}
