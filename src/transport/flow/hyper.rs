//! hyper-util's legacy `Client` over flows (the `hyper-util` feature): the connector's
//! flows wrapped in `TokioIo` with `Connection` reporting what ALPN agreed (HTTP/2 flagged,
//! so the client speaks h2 on that connection), and hyper's `Executor` for the loop's
//! spawners.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;

use super::{Connect, Connector, Flow, FlowError};
use crate::runtime::local::{SendSpawner, Spawner};

impl Connection for Flow {
    fn connected(&self) -> Connected {
        let connected = Connected::new();
        if self.info.is_h2() {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

/// The connector for hyper-util's legacy `Client`: [`Connector`]'s flows in `TokioIo`.
/// Made by [`Connector::hyper`].
#[derive(Debug, Clone)]
pub struct HyperConnector(Connector);

impl Connector {
    /// This connector for hyper-util's legacy `Client`.
    pub fn hyper(self) -> HyperConnector {
        HyperConnector(self)
    }
}

/// The future of [`HyperConnector`]'s `call`.
#[derive(Debug)]
pub struct HyperConnecting(Connect);

impl Future for HyperConnecting {
    type Output = Result<TokioIo<Flow>, FlowError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map_ok(TokioIo::new)
    }
}

impl tower_service::Service<Uri> for HyperConnector {
    type Response = TokioIo<Flow>;
    type Error = FlowError;
    type Future = HyperConnecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), FlowError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> HyperConnecting {
        HyperConnecting(self.0.connect(&uri))
    }
}

/// hyper's executor on the loop (`Send` futures; hyper-util's legacy client needs this
/// one). A refused spawn (the task set full or stopped) drops the future, with a log line:
/// hyper's connection then ends.
impl<F> hyper::rt::Executor<F> for SendSpawner
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        if let Err(e) = self.spawn(future) {
            tracing::warn!("hyper task not started: {e}");
        }
    }
}

/// hyper's executor on the loop for futures that are not `Send` (hyper's `client::conn`
/// and `server::conn` HTTP/2 over flows).
impl<F> hyper::rt::Executor<F> for Spawner
where
    F: Future + 'static,
{
    fn execute(&self, future: F) {
        if let Err(e) = self.spawn(async move {
            future.await;
        }) {
            tracing::warn!("hyper task not started: {e}");
        }
    }
}
