//! The public, Rocket.Chat-compatible API (docs/api.md §3): `users.presence`,
//! `users.setStatus`, `users.getStatus`, all behind token auth.

pub mod answer_cache;
pub mod auth;
pub mod fast_path;
pub mod id_list;
pub mod plan;
pub mod presence;
pub mod query;
pub mod recent_changes;
pub mod status;

#[cfg(test)]
mod fleet_tests;

use crate::http::resource;
use actix_web::web;

/// The scope the public routes are mounted in (see `startup::routes`).
pub const SCOPE: &str = "/api/v1";

/// The path of `users.presence` inside [`SCOPE`].
pub const PRESENCE: &str = "/users.presence";

/// Mounts the public routes inside the `/api/v1` scope (see `startup::routes`). A
/// known path with an unknown method is a 404 too, as upstream answers.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource(SCOPE, PRESENCE)
            .route(web::get().to(presence::get))
            .route(web::post().to(presence::post)),
    )
    .service(
        resource(SCOPE, crate::stream::route::PATH).route(web::get().to(crate::stream::route::get)),
    )
    .service(resource(SCOPE, "/users.setStatus").route(web::post().to(status::set)))
    .service(resource(SCOPE, "/users.getStatus").route(web::get().to(status::get)));
}
