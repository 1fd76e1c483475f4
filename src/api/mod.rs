//! The public, Rocket.Chat-compatible API (SPEC §3): `users.presence`,
//! `users.setStatus`, `users.getStatus`, all behind token auth.

pub mod answer_cache;
pub mod auth;
pub mod presence;
pub mod query;
pub mod status;

use crate::http::not_found;
use actix_web::web;

/// Mounts the public routes inside the `/api/v1` scope (see `startup::routes`). A
/// known path with an unknown method is a 404 too, as upstream answers.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/users.presence")
            .route(web::get().to(presence::get))
            .route(web::post().to(presence::post))
            .default_service(web::to(not_found)),
    )
    .service(
        web::resource("/users.setStatus")
            .route(web::post().to(status::set))
            .default_service(web::to(not_found)),
    )
    .service(
        web::resource("/users.getStatus")
            .route(web::get().to(status::get))
            .default_service(web::to(not_found)),
    );
}
