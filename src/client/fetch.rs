//! Fetching a list of requests to completion: the application behind `tapir get` and the
//! client tests. Each job's response body goes to a [`Sink`] as it arrives.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use http::{Request, Response};
use smoltcp::time::Instant;

use super::{Client, ClientError, ResponseFuture, Target};
use crate::conn::body::{Body, BodyStream, ResponseBody};
use crate::error::Chain;
use crate::runtime::Application;
use crate::stack::Stack;

/// Where a response goes.
pub trait Sink {
    /// The response head arrived.
    fn head(&mut self, response: &Response<ResponseBody>);
    /// Body bytes arrived. An error stops the job.
    fn data(&mut self, data: &[u8]) -> std::io::Result<()>;
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The whole response arrived.
    Done {
        /// Status code.
        status: http::StatusCode,
        /// Body bytes received.
        bytes: u64,
    },
    /// The request failed.
    Failed(String),
}

/// One request and where its response goes.
pub struct Job<S> {
    target: Target,
    request: Option<Request<Body>>,
    future: Option<ResponseFuture>,
    body: Option<ResponseBody>,
    status: http::StatusCode,
    bytes: u64,
    /// The sink receiving the response.
    pub sink: S,
    /// Set when the job is over.
    pub outcome: Option<Outcome>,
}

impl<S: Sink> Job<S> {
    /// A job sending `request` to `target`.
    pub fn new(target: Target, request: Request<Body>, sink: S) -> Self {
        Job {
            target,
            request: Some(request),
            future: None,
            body: None,
            status: http::StatusCode::OK,
            bytes: 0,
            sink,
            outcome: None,
        }
    }

    /// Ends the job with `error`, shown with its sources.
    fn fail(&mut self, error: &(dyn std::error::Error + 'static)) {
        self.fail_with(Chain(error).to_string());
    }

    fn fail_with(&mut self, text: String) {
        self.outcome = Some(Outcome::Failed(text));
        self.future = None;
        self.body = None;
    }

    /// Moves the job along; true when something changed.
    fn advance(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        if let Some(future) = self.future.as_mut() {
            match std::pin::Pin::new(future).poll(cx) {
                Poll::Pending => return false,
                Poll::Ready(Err(e)) => {
                    self.fail(&e);
                    return true;
                }
                Poll::Ready(Ok(response)) => {
                    progress = true;
                    self.future = None;
                    self.status = response.status();
                    self.sink.head(&response);
                    self.body = Some(response.into_body());
                }
            }
        }
        while let Some(body) = self.body.as_mut() {
            match body.poll_chunk(cx, 256 * 1024) {
                Poll::Pending => break,
                Poll::Ready(Some(Ok(chunk))) => {
                    progress = true;
                    self.bytes += chunk.len() as u64;
                    if let Err(e) = self.sink.data(&chunk) {
                        self.fail_with(format!("writing the body: {}", Chain(&e)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    progress = true;
                    self.fail(&e);
                }
                Poll::Ready(None) => {
                    progress = true;
                    self.body = None;
                    self.outcome = Some(Outcome::Done {
                        status: self.status,
                        bytes: self.bytes,
                    });
                }
            }
        }
        progress
    }
}

/// Runs jobs on a [`Client`]: one after another (so keep-alive reuse shows), or all at once
/// (HTTP/2 streams in parallel).
pub struct Fetch<S> {
    /// The client doing the work.
    pub client: Client,
    /// The jobs, in order.
    pub jobs: Vec<Job<S>>,
    parallel: bool,
    next: usize,
}

impl<S: Sink> Fetch<S> {
    /// Fetches `jobs` with `client`, `parallel`ly or one at a time.
    pub fn new(client: Client, jobs: Vec<Job<S>>, parallel: bool) -> Self {
        Fetch {
            client,
            jobs,
            parallel,
            next: 0,
        }
    }

    /// Adds a job (it starts when its turn comes).
    pub fn push(&mut self, job: Job<S>) {
        self.jobs.push(job);
    }

    /// Failures so far, with the job index.
    pub fn failures(&self) -> Vec<(usize, String)> {
        self.jobs
            .iter()
            .enumerate()
            .filter_map(|(i, j)| match &j.outcome {
                Some(Outcome::Failed(e)) => Some((i, e.clone())),
                _ => None,
            })
            .collect()
    }

    fn start_jobs(&mut self) -> bool {
        let mut started = false;
        while self.next < self.jobs.len() {
            let running = self.jobs[..self.next].iter().any(|j| j.outcome.is_none());
            if running && !self.parallel {
                break;
            }
            let job = &mut self.jobs[self.next];
            if let Some(request) = job.request.take() {
                job.future = Some(self.client.send(&job.target, request));
                started = true;
            }
            self.next += 1;
        }
        started
    }
}

impl<S: Sink> Application for Fetch<S> {
    fn poll(&mut self, stack: &mut Stack, now: Instant) -> bool {
        let mut progress = false;
        for _ in 0..8 {
            let mut turn = self.start_jobs();
            turn |= self.client.poll(stack, now);
            let mut cx = Context::from_waker(Waker::noop());
            for job in &mut self.jobs {
                if job.outcome.is_none() {
                    turn |= job.advance(&mut cx);
                }
            }
            progress |= turn;
            if !turn {
                break;
            }
        }
        progress
    }

    fn poll_at(&self, now: Instant) -> Option<Instant> {
        self.client.poll_at(now)
    }

    fn shutdown(&mut self, stack: &mut Stack, now: Instant) {
        for job in &mut self.jobs {
            if job.outcome.is_none() {
                job.fail(&ClientError::Connection("stopped".into()));
            }
        }
        self.client.shutdown(stack, now);
    }

    fn is_finished(&self) -> bool {
        self.next >= self.jobs.len() && self.jobs.iter().all(|j| j.outcome.is_some())
    }
}
