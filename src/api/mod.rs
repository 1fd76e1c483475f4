//! The public, Rocket.Chat-compatible API (SPEC §3): `users.presence`,
//! `users.setStatus`, `users.getStatus`, all behind token auth.

pub mod answer_cache;
pub mod auth;
pub mod presence;
pub mod query;
pub mod status;

use crate::http::resource;
use actix_web::web;

/// Mounts the public routes. A known path with an unknown method is a 404 too,
/// as upstream answers.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("", "/api/v1/users.presence")
            .route(web::get().to(presence::get))
            .route(web::post().to(presence::post)),
    )
    .service(resource("", "/api/v1/users.setStatus").route(web::post().to(status::set)))
    .service(resource("", "/api/v1/users.getStatus").route(web::get().to(status::get)));
}
