//! `/_ferry/…`: what this node serves, as JSON for tools (`ferry client-config` reads it).
//!
//! - `GET /_ferry/images`: `[{"registry": HOST or null, "repository": NAME, "tags": [...]}]` — every repository the
//!   registry mirror serves, with the upstream registry its images were ingested from (containerd and podman
//!   mirror configuration is written per upstream host).

use super::Mirror;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The routes, to be given the mirror as state.
pub fn routes() -> Router<Mirror> {
    Router::new().route("/_ferry/images", get(images))
}

async fn images(State(mirror): State<Mirror>) -> Response {
    let catalog = match mirror.catalog().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "building the catalog");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the node's log",
            )
                .into_response();
        }
    };
    let list: Vec<serde_json::Value> = catalog
        .images()
        .map(|(registry, repository, tags)| {
            serde_json::json!({ "registry": registry, "repository": repository, "tags": tags })
        })
        .collect();
    axum::Json(list).into_response()
}
