//! Fetching a list of requests to completion: the application behind `tapir get` and the
//! client tests. Each job's response body goes to a [`Sink`] as it arrives.
//!
//! [`ClientWork`] and [`WithClient`] are the same loop for any other work on a client (a
//! test collecting a body frame by frame, a benchmark counting responses): the client is
//! polled, then the work, in rounds until neither moves ([`poll_with`]).

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

    /// Sends the request on `client` if not sent yet; true when it was sent now.
    pub fn start(&mut self, client: &mut Client) -> bool {
        match self.request.take() {
            Some(request) => {
                self.future = Some(client.send(&self.target, request));
                true
            }
            None => false,
        }
    }

    /// Moves the job along: the response head, then its body into the sink; true when
    /// something changed. The job is over once [`Job::outcome`] is set.
    pub fn advance(&mut self, cx: &mut Context<'_>) -> bool {
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
}

/// The jobs of a [`Fetch`], as work on its client.
struct Running<'a, S> {
    jobs: &'a mut [Job<S>],
    parallel: bool,
    next: &'a mut usize,
}

impl<S: Sink> ClientWork for Running<'_, S> {
    fn start(&mut self, client: &mut Client) -> bool {
        let mut started = false;
        while *self.next < self.jobs.len() {
            let (before, rest) = self.jobs.split_at_mut(*self.next);
            if !self.parallel && before.iter().any(|j| j.outcome.is_none()) {
                break;
            }
            if let Some(job) = rest.first_mut() {
                started |= job.start(client);
            }
            *self.next += 1;
        }
        started
    }

    fn advance(&mut self, _client: &mut Client, cx: &mut Context<'_>) -> bool {
        let mut moved = false;
        for job in self.jobs.iter_mut() {
            if job.outcome.is_none() {
                moved |= job.advance(cx);
            }
        }
        moved
    }

    fn is_done(&self, _client: &Client) -> bool {
        all_done(self.jobs, *self.next)
    }

    fn stop(&mut self) {
        for job in self.jobs.iter_mut() {
            if job.outcome.is_none() {
                job.fail(&ClientError::Connection("stopped".into()));
            }
        }
    }
}

impl<S: Sink> Fetch<S> {
    fn running(&mut self) -> (&mut Client, Running<'_, S>) {
        let running = Running {
            jobs: &mut self.jobs,
            parallel: self.parallel,
            next: &mut self.next,
        };
        (&mut self.client, running)
    }
}

impl<S: Sink> Application for Fetch<S> {
    fn poll(&mut self, stack: &mut Stack, now: Instant) -> bool {
        let (client, mut running) = self.running();
        poll_with(client, &mut running, stack, now)
    }

    fn poll_at(&self, now: Instant) -> Option<Instant> {
        self.client.poll_at(now)
    }

    fn shutdown(&mut self, stack: &mut Stack, now: Instant) {
        let (client, mut running) = self.running();
        running.stop();
        client.shutdown(stack, now);
    }

    fn is_finished(&self) -> bool {
        all_done(&self.jobs, self.next)
    }
}

/// True when every job was started (`next` is past the last) and is over.
fn all_done<S>(jobs: &[Job<S>], next: usize) -> bool {
    next >= jobs.len() && jobs.iter().all(|j| j.outcome.is_some())
}

/// Work on a [`Client`] in the loop: requests sent on it and what comes back read.
/// [`WithClient`] makes it an [`Application`]; [`poll_with`] runs one turn of it.
pub trait ClientWork {
    /// Sends what is due, before the client is polled; true when anything was sent.
    fn start(&mut self, _client: &mut Client) -> bool {
        false
    }

    /// Moves the work along after the client was polled (responses, bodies); true when
    /// anything moved. `cx` has a no-op waker: the loop comes back whenever anything moved.
    fn advance(&mut self, client: &mut Client, cx: &mut Context<'_>) -> bool;

    /// True once the work is over (the application is then finished).
    fn is_done(&self, client: &Client) -> bool;

    /// The loop stops: end whatever is unfinished.
    fn stop(&mut self) {}
}

/// Rounds of [`poll_with`] at most per turn of the loop.
const ROUNDS: usize = 8;

/// One turn of the loop for `work` on `client`: in rounds, the work starts what is due,
/// the client is polled and the work moves along, until a round moves nothing (at most
/// 8 rounds, so the stack gets its turn). True when anything moved.
pub fn poll_with<W: ClientWork + ?Sized>(
    client: &mut Client,
    work: &mut W,
    stack: &mut Stack,
    now: Instant,
) -> bool {
    let mut progress = false;
    for _ in 0..ROUNDS {
        let mut turn = work.start(client);
        turn |= client.poll(stack, now);
        let mut cx = Context::from_waker(Waker::noop());
        turn |= work.advance(client, &mut cx);
        progress |= turn;
        if !turn {
            break;
        }
    }
    progress
}

/// A [`Client`] and work on it, as an [`Application`]: finished once the work is done.
pub struct WithClient<W> {
    /// The client.
    pub client: Client,
    /// The work on it.
    pub work: W,
}

impl<W: ClientWork> WithClient<W> {
    /// `work` on `client`.
    pub fn new(client: Client, work: W) -> Self {
        WithClient { client, work }
    }
}

impl<W: ClientWork> Application for WithClient<W> {
    fn poll(&mut self, stack: &mut Stack, now: Instant) -> bool {
        poll_with(&mut self.client, &mut self.work, stack, now)
    }

    fn poll_at(&self, now: Instant) -> Option<Instant> {
        self.client.poll_at(now)
    }

    fn shutdown(&mut self, stack: &mut Stack, now: Instant) {
        self.work.stop();
        self.client.shutdown(stack, now);
    }

    fn is_finished(&self) -> bool {
        self.work.is_done(&self.client)
    }
}
