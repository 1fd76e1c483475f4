//! The internal (ingest) API, `/internal/v1/*` (docs/api.md §4): how the chat server
//! pushes users, tokens, connections and statuses in. Bearer-token protected.

mod auth;
mod ops;
mod routes;

pub use auth::{is_placeholder, IngestAuth};
pub use ops::{parse_batch_op, parse_op, Fields, OpKind};

use crate::http::{not_found, resource};
use actix_web::web;

/// Mounts the internal routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    const SCOPE: &str = "/internal/v1";
    let resource = |path: &str| resource(SCOPE, path);
    cfg.service(
        web::scope(SCOPE)
            .service(
                resource("/users/{id}")
                    .route(web::put().to(routes::put_user))
                    .route(web::delete().to(routes::delete_user)),
            )
            .service(
                resource("/users/{id}/tokens")
                    .route(web::post().to(routes::add_token))
                    .route(web::delete().to(routes::revoke_token)),
            )
            .service(resource("/users/{id}/status").route(web::put().to(routes::set_status)))
            .service(
                resource("/connections/{id}")
                    .route(web::put().to(routes::put_connection))
                    .route(web::delete().to(routes::delete_connection)),
            )
            .service(resource("/instances/{id}").route(web::delete().to(routes::delete_instance)))
            .service(resource("/batch").route(web::post().to(routes::batch)))
            .service(resource("/settings").route(web::put().to(routes::put_settings)))
            .service(resource("/stats").route(web::get().to(routes::stats)))
            .default_service(web::to(not_found)),
    );
}
