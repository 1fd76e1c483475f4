//! The middleware every request passes through: it refuses an oversized head
//! (see [`HeadLimits`]), and when the answer is ready it records the request's
//! metrics and logs one line.
//!
//! Requests are labelled by route pattern, never by raw path, so the number of
//! series stays bounded. Resources are named after their pattern, which
//! `match_name` returns without allocating; a resource without a name falls back
//! to `match_pattern`, which allocates. A request answered before the router
//! (see [`Observe::with_front_route`]) is labelled by its path without asking
//! the router's map, whose search is a string compare per node. Each worker
//! keeps the metric handles of the routes it has seen in a map of its own, so
//! recording a request takes no lock and, after a route's first request,
//! allocates nothing.

use super::head_limits::HeadLimits;
use super::ApiError;
use crate::metrics::{Metrics, RouteMetrics, UNMATCHED};
use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::{Error, HttpRequest};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// The middleware's factory: one per application, shared by its workers.
#[derive(Debug, Clone)]
pub struct Observe {
    metrics: Arc<Metrics>,
    limits: HeadLimits,
    front_route: Option<&'static str>,
}

impl Observe {
    pub fn new(metrics: Arc<Metrics>, limits: HeadLimits) -> Observe {
        Observe {
            metrics,
            limits,
            front_route: None,
        }
    }

    /// Labels requests for exactly `path` as `path`: for a route answered before
    /// the router, whose resource must be named `path` too (as
    /// [`crate::http::resource`] names every resource), so that the label is the
    /// same whichever way the request went.
    pub fn with_front_route(mut self, path: &'static str) -> Observe {
        self.front_route = Some(path);
        self
    }
}

/// What one worker's middleware shares with its requests' futures.
struct Worker {
    observe: Observe,
    /// The front route's handles, kept apart: it is the route most requests take.
    front_metrics: RefCell<Option<RouteMetrics>>,
    routes: RefCell<HashMap<Box<str>, RouteMetrics, foldhash::fast::RandomState>>,
}

impl<S, B> Transform<S, ServiceRequest> for Observe
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = ObserveMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<ObserveMiddleware<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ObserveMiddleware {
            service,
            worker: Rc::new(Worker {
                observe: self.clone(),
                front_metrics: RefCell::default(),
                routes: RefCell::default(),
            }),
        }))
    }
}

/// The middleware of one worker.
pub struct ObserveMiddleware<S> {
    service: S,
    worker: Rc<Worker>,
}

impl<S, B> Service<ServiceRequest> for ObserveMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = Observed<S::Future>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let start = Instant::now();
        let worker = Rc::clone(&self.worker);
        match worker.observe.limits.check(req.head()) {
            Ok(()) => Observed {
                inner: Some(self.service.call(req)),
                refused: None,
                start,
                worker,
            },
            Err(refusal) => Observed {
                inner: None,
                refused: Some(req.error_response(refusal)),
                start,
                worker,
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// A request in flight: the inner service's answer, or the refusal of its head.
    pub struct Observed<F> {
        #[pin]
        inner: Option<F>,
        refused: Option<ServiceResponse<BoxBody>>,
        start: Instant,
        worker: Rc<Worker>,
    }
}

impl<F, B> Future for Observed<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
    B: MessageBody,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(refused) = this.refused.take() {
            this.worker.record(refused.request(), &refused, *this.start);
            return Poll::Ready(Ok(refused.map_into_right_body()));
        }
        let Some(inner) = this.inner.as_pin_mut() else {
            // Polled again after it finished: a bug of the caller, answered as an error.
            return Poll::Ready(Err(actix_web::error::ErrorInternalServerError(
                "request polled after completion",
            )));
        };
        match inner.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(response)) => {
                this.worker
                    .record(response.request(), &response, *this.start);
                Poll::Ready(Ok(response.map_into_left_body()))
            }
            Poll::Ready(Err(error)) => {
                // Handlers' errors arrive as responses; an error here comes from
                // a layer below and is answered by actix as its status code.
                let status = error.as_response_error().status_code().as_u16();
                this.worker.record_failure(status, &error, *this.start);
                Poll::Ready(Err(error))
            }
        }
    }
}

impl Worker {
    fn record<B>(&self, req: &HttpRequest, response: &ServiceResponse<B>, start: Instant) {
        let seconds = start.elapsed().as_secs_f64();
        let status = response.status().as_u16();
        let front = self
            .observe
            .front_route
            .filter(|front| *front == req.path());
        let route: Cow<'_, str> = match front.or_else(|| req.match_name()) {
            Some(name) => Cow::Borrowed(name),
            None => req
                .match_pattern()
                .map_or(Cow::Borrowed(UNMATCHED), Cow::Owned),
        };
        match front {
            Some(front) => self.count_front(front, status, seconds),
            None => self.count(&route, status, seconds),
        }
        let method = req.method().as_str();
        let latency_ms = seconds * 1000.0;
        if status < 400 {
            tracing::debug!(method, route = &*route, status, latency_ms, "request");
            return;
        }
        let error = response.response().error();
        let api_error = error.and_then(|e| e.as_error::<ApiError>());
        let reason = self.reject(status, api_error);
        let message = error.map(ToString::to_string).unwrap_or_default();
        if status >= 500 {
            tracing::error!(method, route = &*route, status, latency_ms, reason = &*reason, error = %message, "request failed");
        } else {
            tracing::debug!(method, route = &*route, status, latency_ms, reason = &*reason, error = %message, "request refused");
        }
    }

    fn record_failure(&self, status: u16, error: &Error, start: Instant) {
        let seconds = start.elapsed().as_secs_f64();
        self.count(UNMATCHED, status, seconds);
        let reason = self.reject(status, error.as_error::<ApiError>());
        tracing::error!(route = UNMATCHED, status, reason = &*reason, error = %error, "request failed");
    }

    fn count_front(&self, route: &'static str, status: u16, seconds: f64) {
        self.front_metrics
            .borrow_mut()
            .get_or_insert_with(|| self.observe.metrics.route(route))
            .record(&self.observe.metrics, status, seconds);
    }

    fn count(&self, route: &str, status: u16, seconds: f64) {
        let mut routes = self.routes.borrow_mut();
        match routes.get_mut(route) {
            Some(handles) => handles.record(&self.observe.metrics, status, seconds),
            None => {
                let mut handles = self.observe.metrics.route(route);
                handles.record(&self.observe.metrics, status, seconds);
                routes.insert(route.into(), handles);
            }
        }
    }

    /// Counts a refusal and returns its reason: the `errorType`, or `http-<status>`
    /// for an answer that is not ours.
    fn reject(&self, status: u16, error: Option<&ApiError>) -> Cow<'static, str> {
        let reason = error.map_or_else(
            || Cow::Owned(format!("http-{status}")),
            |e| Cow::Borrowed(e.reason()),
        );
        self.observe.metrics.rejected(&reason);
        reason
    }
}
