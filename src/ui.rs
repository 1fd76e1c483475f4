//! What presenced serves to browsers besides the API: the dependency-free polling
//! client (`client/presence.js`, at `/client/presence.js` and, as an ES module, at
//! `/client/presence.mjs`) and the live roster page (`client/roster.html`, at `/`).
//!
//! Both are compiled in, so the binary is the whole deployment and the page can never
//! drift from the client it was shipped with.

use crate::demo;
use crate::http::not_found;
use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// The client as a classic script: it sets `globalThis.PresenceClient`.
pub const CLIENT_SCRIPT: &str = include_str!("../client/presence.js");

/// The same source as an ES module. A classic script without `import`/`export` is also
/// valid module code, so appending the exports is the whole build step.
pub const CLIENT_MODULE: &str = concat!(
    include_str!("../client/presence.js"),
    "\nexport { PresenceClient };\nexport default PresenceClient;\n"
);

const ROSTER_HTML: &str = include_str!("../client/roster.html");

/// Where the page reads the credentials it polls with; `null` means "ask for them".
const CREDENTIALS_SLOT: &str =
    r#"<script id="presenced-credentials" type="application/json">null</script>"#;

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// Mounts the client inside the `/client` scope (see `startup::routes`). As
/// everywhere, a known path with an unknown method is a 404.
pub fn configure_client(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/presence.js")
            .route(web::get().to(client_script))
            .default_service(web::to(not_found)),
    )
    .service(
        web::resource("/presence.mjs")
            .route(web::get().to(client_module))
            .default_service(web::to(not_found)),
    );
}

async fn client_script() -> HttpResponse {
    script(CLIENT_SCRIPT)
}

async fn client_module() -> HttpResponse {
    script(CLIENT_MODULE)
}

fn script(source: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(JAVASCRIPT)
        // Revalidated on every load, so an upgraded service is never paired with a stale client.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(source)
}

/// The roster page, rendered once at start-up.
#[derive(Debug, Clone)]
pub struct Roster {
    html: web::Bytes,
}

impl Roster {
    /// Returns the page. With `demo` it carries the demo caller's id and token, so it
    /// polls as that caller at once; otherwise it asks the visitor for credentials.
    /// The demo token is public (it is the upstream documentation's), so filling it in
    /// gives nothing away; no other credential is ever put in the page.
    pub fn new(demo: bool) -> Roster {
        let html = if demo {
            let credentials = serde_json::json!({
                "userId": demo::CALLER_ID,
                "authToken": demo::CALLER_TOKEN,
            });
            let filled = CREDENTIALS_SLOT.replace("null", &credentials.to_string());
            ROSTER_HTML.replacen(CREDENTIALS_SLOT, &filled, 1)
        } else {
            ROSTER_HTML.to_owned()
        };
        Roster {
            html: web::Bytes::from(html),
        }
    }

    /// `GET /`
    pub fn respond(&self) -> HttpResponse {
        HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            // Never kept by a cache: under --demo the page holds a login token.
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"))
            // The page talks to its own origin only; the policy keeps it that way even if
            // a user's name were ever to smuggle markup in.
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self' 'unsafe-inline'; \
                 style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; \
                 base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ))
            .body(self.html.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(roster: &Roster) -> &str {
        std::str::from_utf8(&roster.html).expect("utf-8 page")
    }

    #[test]
    fn the_page_has_exactly_one_credentials_slot() {
        assert_eq!(ROSTER_HTML.matches(CREDENTIALS_SLOT).count(), 1);
    }

    #[test]
    fn only_the_demo_page_carries_the_demo_credentials() {
        let demo = Roster::new(true);
        assert!(page(&demo).contains(&format!(
            r#"{{"authToken":"{}","userId":"{}"}}"#,
            demo::CALLER_TOKEN,
            demo::CALLER_ID
        )));
        let plain = Roster::new(false);
        assert!(page(&plain).contains(CREDENTIALS_SLOT));
        assert!(!page(&plain).contains(demo::CALLER_TOKEN));
    }

    #[test]
    fn the_module_is_the_script_plus_its_exports() {
        let exports = CLIENT_MODULE
            .strip_prefix(CLIENT_SCRIPT)
            .expect("same source");
        assert!(exports.contains("export default PresenceClient;"));
        assert!(!CLIENT_SCRIPT.contains("\nexport "));
    }
}
