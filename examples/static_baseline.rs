//! The load test's baseline: a minimal actix-web server that answers every
//! request with the bytes of one file, read once at start. Driven with the very
//! same wrk command (URL, headers) as presenced, whatever presenced costs beyond
//! this is the cost of presenced.
//!
//! `static_baseline <bind addr> <workers> <body file>`

use actix_web::{web, App, HttpResponse, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, bind, workers, file] = args.as_slice() else {
        eprintln!("usage: static_baseline <bind addr> <workers> <body file>");
        std::process::exit(2);
    };
    let workers: usize = workers.parse().map_err(std::io::Error::other)?;
    let body = web::Bytes::from(std::fs::read(file)?);
    HttpServer::new(move || {
        let body = body.clone();
        App::new().default_service(web::to(move || {
            let body = body.clone();
            async move {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(body)
            }
        }))
    })
    .workers(workers)
    .bind(bind.as_str())?
    .run()
    .await
}
