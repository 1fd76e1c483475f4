//! The load test's baseline: a minimal actix-web server that answers every
//! request with the bytes of one file, read once at start. Driven with the very
//! same wrk command (URL, headers) as presenced, whatever presenced costs beyond
//! this is the cost of presenced.
//!
//! `static_baseline <bind addr> <workers> <body file | directory>`
//!
//! Given a directory (a fleet of clients, see benches/fleet.py), it holds the
//! files `0`, `1`, .. of it and answers a request carrying `X-Body: <i>` with
//! file `i`, so each of a fleet's requests gets bytes of its own answer's size;
//! a request without that header gets file `0`.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use std::sync::Arc;

/// The numbered bodies of `dir`, from `0` up to the first number missing.
fn numbered(dir: &std::path::Path) -> std::io::Result<Vec<web::Bytes>> {
    let mut bodies = Vec::new();
    while let Ok(body) = std::fs::read(dir.join(bodies.len().to_string())) {
        bodies.push(web::Bytes::from(body));
    }
    if bodies.is_empty() {
        return Err(std::io::Error::other(format!("no file 0 in {dir:?}")));
    }
    Ok(bodies)
}

async fn respond(body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, bind, workers, file] = args.as_slice() else {
        eprintln!("usage: static_baseline <bind addr> <workers> <body file | directory>");
        std::process::exit(2);
    };
    let workers: usize = workers.parse().map_err(std::io::Error::other)?;
    let path = std::path::Path::new(file);
    // Shared, not copied: actix clones a handler (and what it holds) per request.
    let bodies: Arc<[web::Bytes]> = if path.is_dir() {
        numbered(path)?.into()
    } else {
        vec![web::Bytes::from(std::fs::read(path)?)].into()
    };
    HttpServer::new(move || {
        let bodies = Arc::clone(&bodies);
        let app = App::new();
        // One body: the handler takes no request, as before fleets existed.
        match &bodies[..] {
            [one] => {
                let body = one.clone();
                app.default_service(web::to(move || respond(body.clone())))
            }
            _ => app.default_service(web::to(move |req: HttpRequest| {
                let i = req
                    .headers()
                    .get("x-body")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                respond(bodies.get(i).unwrap_or(&bodies[0]).clone())
            })),
        }
    })
    .workers(workers)
    .bind(bind.as_str())?
    .run()
    .await
}
