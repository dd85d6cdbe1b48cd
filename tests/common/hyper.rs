//! hyper 1.x on tapir's flows, shared by the flow tests: an echoing handler, the loop as
//! hyper's executor, and an accept loop serving HTTP/1.1 or HTTP/2 (by ALPN).

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tapir::transport::flow::{FlowHandle, FlowListener};

/// hyper's executor: spawns on the flow table's loop (no runtime).
#[derive(Clone)]
pub struct LoopExec(pub FlowHandle);

impl<F> hyper::rt::Executor<F> for LoopExec
where
    F: Future + 'static,
{
    fn execute(&self, future: F) {
        self.0
            .spawn(async move {
                future.await;
            })
            .expect("room for the task");
    }
}

/// A deterministic body of `n` bytes.
pub fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

/// hyper's handler: `<method> <path> <version>\n` then the request body, echoed.
pub async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let head = format!(
        "{} {} {:?}\n",
        request.method(),
        request.uri().path(),
        request.version()
    );
    let body = request.into_body().collect().await?.to_bytes();
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    Ok(Response::new(Full::new(Bytes::from(out))))
}

/// Accepts flows on `listener` and serves each with hyper: HTTP/2 when ALPN chose it, else
/// HTTP/1.1; counts the flows in `accepted`.
pub async fn hyper_server(
    handle: FlowHandle,
    mut listener: FlowListener,
    accepted: Rc<Cell<usize>>,
) {
    while let Ok(flow) = listener.accept().await {
        accepted.set(accepted.get() + 1);
        let exec = LoopExec(handle.clone());
        let h2 = flow.info().is_h2();
        let io = TokioIo::new(flow);
        let task = async move {
            let result = if h2 {
                hyper::server::conn::http2::Builder::new(exec)
                    .serve_connection(io, service_fn(answer))
                    .await
            } else {
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service_fn(answer))
                    .await
            };
            if let Err(e) = result {
                panic!("hyper server connection failed: {e}");
            }
        };
        handle.spawn(task).expect("room for the task");
    }
}
