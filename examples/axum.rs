//! An axum `Router`, unchanged, served by tapir on a TAP device: HTTP/1.1 and h2c (prior
//! knowledge or `Upgrade: h2c`) on 10.7.0.2 port 80.
//!
//! ```sh
//! scripts/netns.sh up demo
//! ip netns exec demo cargo run --release --example axum -- --tap tap0 &
//! ip netns exec demo curl http://10.7.0.2/hello
//! ip netns exec demo curl --http2-prior-knowledge http://10.7.0.2/users/7
//! ip netns exec demo curl -H 'content-type: application/json' -d '{"a":1}' http://10.7.0.2/echo-json
//! ```

mod common;

use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tapir::runtime::StopHandle;
use tapir::service::{Server, ServerConfig};

/// The application: nothing in it knows about tapir.
fn router() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/users/{id}",
            get(|Path(id): Path<u64>| async move { Json(json!({ "id": id })) }),
        )
        .route(
            "/echo-json",
            post(|Json(value): Json<Value>| async move { Json(value) }),
        )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = common::args("usage: axum --tap NAME")?;
    let (mut tap, mut stack) = common::tap_stack(&args.tap)?;
    let mut server = Server::from_service(router(), ServerConfig::default());
    server.bind_http(&mut stack, 80)?;
    eprintln!("ready: axum on http://10.7.0.2/ (HTTP/1.1 and h2c)");
    tapir::serve(&mut tap, &mut stack, &mut server, &StopHandle::new())?;
    Ok(())
}
