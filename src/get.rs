//! `tapir get`: fetch URLs through the userspace stack, like a small curl.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use clap::Args;
use http::{Method, Request, Response, Uri};
use indicatif::{ProgressBar, ProgressStyle};
use smoltcp::time::Instant;
use smoltcp::wire::IpAddress;
use tapir::client::fetch::{Fetch, Job, Outcome, Sink};
use tapir::client::{Client, ClientConfig, Target, Version};
use tapir::error::Chain;
use tapir::runtime::Application;
use tapir::service::{Body, ResponseBody};
use tapir::stack::{DnsPoll, DnsQuery, Stack};
use tapir::transport::certs::Roots;

/// Flags of `tapir get`.
#[derive(Debug, Args, Clone)]
pub struct GetArgs {
    /// URLs to fetch (http:// or https://). Several URLs on one origin share a connection.
    #[arg(required = true, value_name = "URL")]
    pub urls: Vec<String>,

    /// Write bodies to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Use HTTP/1.1 only.
    #[arg(long = "http1.1", conflicts_with = "http2")]
    pub http1: bool,

    /// Use HTTP/2 only (ALPN h2 over TLS; prior knowledge over cleartext).
    #[arg(long = "http2")]
    pub http2: bool,

    /// Trust the certificates in this PEM file (instead of the public roots).
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    pub cacert: Option<PathBuf>,

    /// Accept any server certificate (no authentication!).
    #[arg(short = 'k', long)]
    pub insecure: bool,

    /// Send HEAD and print the response headers.
    #[arg(short = 'I', long)]
    pub head: bool,

    /// Request method.
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    pub method: Option<String>,

    /// Request body (sent with POST unless -X says otherwise).
    #[arg(short = 'd', long = "data", value_name = "DATA")]
    pub data: Option<String>,

    /// Use ADDR for HOST:PORT instead of looking the name up (like curl).
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    pub resolve: Vec<String>,

    /// DNS server to look names up with (through the stack) [default: from DHCP].
    #[arg(long, value_name = "IP")]
    pub dns: Vec<std::net::IpAddr>,

    /// Follow redirects.
    #[arg(short = 'L', long)]
    pub location: bool,

    /// Most redirects followed with -L.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub max_redirs: u32,

    /// Seconds allowed for each TCP and TLS handshake.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub connect_timeout: u64,

    /// Seconds allowed for the whole run.
    #[arg(short = 'm', long, value_name = "SECS")]
    pub max_time: Option<u64>,
}

/// A `--resolve` entry.
#[derive(Debug, Clone)]
struct Pin {
    host: String,
    port: u16,
    addr: IpAddress,
}

fn parse_resolve(entry: &str) -> anyhow::Result<Pin> {
    let bad = || anyhow::anyhow!("--resolve '{entry}' is not HOST:PORT:ADDR");
    let (host, rest) = entry.split_once(':').ok_or_else(bad)?;
    let (port, addr) = rest.split_once(':').ok_or_else(bad)?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    Ok(Pin {
        host: host.to_string(),
        port: port.parse().map_err(|_| bad())?,
        addr: IpAddress::from(addr.parse::<std::net::IpAddr>().map_err(|_| bad())?),
    })
}

/// Where bodies go, and what the user sees on stderr.
struct Output {
    out: Rc<RefCell<Box<dyn Write>>>,
    head_only: bool,
    /// Following redirects (-L): a redirect's own body is not written.
    follow: bool,
    skip_body: bool,
    status: Option<http::StatusCode>,
    location: Option<String>,
    progress: Option<ProgressBar>,
    interactive: bool,
    /// When the response head arrived (the body's transfer time is measured from it, as
    /// curl's `time_total - time_starttransfer`).
    head_at: Option<std::time::Instant>,
}

impl Sink for Output {
    fn head(&mut self, response: &Response<ResponseBody>) {
        let version = match response.version() {
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        };
        eprintln!("< {version} {}", response.status());
        self.head_at = Some(std::time::Instant::now());
        self.status = Some(response.status());
        self.location = response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.skip_body =
            self.follow && response.status().is_redirection() && self.location.is_some();
        if self.head_only {
            let mut out = self.out.borrow_mut();
            let _ = writeln!(out, "{version} {}", response.status());
            for (name, value) in response.headers() {
                let _ = writeln!(out, "{name}: {}", String::from_utf8_lossy(value.as_bytes()));
            }
            let _ = writeln!(out);
        }
        let len = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if self.interactive && !self.head_only && len.is_some_and(|l| l >= 1 << 20) {
            let bar = ProgressBar::new(len.unwrap_or(0));
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            self.progress = Some(bar);
        }
    }

    fn data(&mut self, data: &[u8]) -> std::io::Result<()> {
        if let Some(bar) = &self.progress {
            bar.inc(data.len() as u64);
        }
        if self.skip_body {
            return Ok(());
        }
        self.out.borrow_mut().write_all(data)
    }
}

struct Planned {
    uri: Uri,
    redirects: u32,
}

/// Resolves, fetches, follows redirects; one URL at a time so output stays in order.
pub struct Get {
    args: GetArgs,
    pins: Vec<Pin>,
    dns: Vec<IpAddress>,
    queue: VecDeque<Planned>,
    resolving: Option<(Planned, Target, DnsQuery)>,
    fetch: Fetch<Output>,
    out: Rc<RefCell<Box<dyn Write>>>,
    current: Option<(usize, Planned)>,
    /// Failures, for the exit code.
    pub failures: Vec<String>,
    deadline: Option<Instant>,
}

impl Get {
    /// Plans the run.
    pub fn new(args: GetArgs) -> anyhow::Result<Self> {
        let pins = args
            .resolve
            .iter()
            .map(|r| parse_resolve(r))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let queue = args
            .urls
            .iter()
            .map(|u| {
                // Checked in full (scheme, host, port) before the TAP device is touched.
                Target::parse_url(u).map(|uri| Planned { uri, redirects: 0 })
            })
            .collect::<Result<VecDeque<_>, _>>()?;
        let version = if args.http1 {
            Version::Http1
        } else if args.http2 {
            Version::Http2
        } else {
            Version::Auto
        };
        let roots = if args.insecure {
            Roots::Insecure
        } else if let Some(ca) = &args.cacert {
            Roots::CaFile(ca.clone())
        } else {
            Roots::WebPki
        };
        let config = ClientConfig {
            version,
            roots,
            connect_timeout: Duration::from_secs(args.connect_timeout),
            ..ClientConfig::default()
        };
        let client = Client::new(config)?;
        let out: Box<dyn Write> = match &args.output {
            Some(path) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .map_err(|e| anyhow::anyhow!("-o {}: {e}", path.display()))?,
            )),
            None => Box::new(std::io::BufWriter::new(std::io::stdout())),
        };
        Ok(Get {
            dns: args.dns.iter().map(|a| IpAddress::from(*a)).collect(),
            pins,
            queue,
            resolving: None,
            fetch: Fetch::new(client, Vec::new(), false),
            out: Rc::new(RefCell::new(out)),
            current: None,
            failures: Vec::new(),
            deadline: None,
            args,
        })
    }

    fn request(&self, uri: &Uri) -> anyhow::Result<Request<Body>> {
        let method = match (&self.args.method, self.args.head, &self.args.data) {
            (Some(m), _, _) => Method::from_bytes(m.as_bytes())?,
            (None, true, _) => Method::HEAD,
            (None, false, Some(_)) => Method::POST,
            (None, false, None) => Method::GET,
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let body = match &self.args.data {
            Some(d) => Body::from(d.clone()),
            None => Body::empty(),
        };
        let mut builder = Request::builder().method(method).uri(path);
        if self.args.data.is_some() {
            builder = builder.header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        }
        builder = builder
            .header(
                http::header::USER_AGENT,
                concat!("tapir/", env!("CARGO_PKG_VERSION")),
            )
            .header(http::header::ACCEPT, "*/*");
        Ok(builder.body(body)?)
    }

    fn start(&mut self, planned: Planned, target: Target) {
        match self.request(&planned.uri) {
            Ok(request) => {
                eprintln!("* {} {}", request.method(), planned.uri);
                let sink = Output {
                    out: self.out.clone(),
                    head_only: self.args.head,
                    follow: self.args.location,
                    skip_body: false,
                    status: None,
                    location: None,
                    progress: None,
                    interactive: std::io::stderr().is_terminal(),
                    head_at: None,
                };
                let index = self.fetch.jobs.len();
                self.fetch.push(Job::new(target, request, sink));
                self.current = Some((index, planned));
            }
            Err(e) => self.failures.push(format!("{}: {e:#}", planned.uri)),
        }
    }

    /// Finds the address of the next URL; starts DNS if needed.
    fn next(&mut self, stack: &mut Stack) -> bool {
        if self.current.is_some() || self.resolving.is_some() {
            return false;
        }
        let Some(planned) = self.queue.pop_front() else {
            return false;
        };
        let placeholder = IpAddress::v4(0, 0, 0, 0);
        let mut target = match Target::from_uri(&planned.uri, placeholder) {
            Ok(t) => t,
            Err(e) => {
                self.failures.push(Chain(&e).to_string());
                return true;
            }
        };
        if let Some(addr) = Target::literal_addr(&planned.uri) {
            target.addr = addr;
        } else if let Some(pin) = self
            .pins
            .iter()
            .find(|p| p.host == target.host && p.port == target.port)
        {
            target.addr = pin.addr;
        } else {
            match stack.resolve(&target.host, &self.dns, false) {
                Ok(query) => {
                    eprintln!("* looking up {}", target.host);
                    self.resolving = Some((planned, target, query));
                }
                Err(e) => self
                    .failures
                    .push(format!("{}: {}", planned.uri, Chain(&e))),
            }
            return true;
        }
        self.start(planned, target);
        true
    }

    fn poll_dns(&mut self, stack: &mut Stack) -> bool {
        let Some((planned, mut target, query)) = self.resolving.take() else {
            return false;
        };
        match stack.dns_result(query) {
            DnsPoll::Pending(query) => {
                self.resolving = Some((planned, target, query));
                false
            }
            DnsPoll::Done(Ok(addrs)) if !addrs.is_empty() => {
                target.addr = addrs[0];
                eprintln!("* {} is {}", target.host, target.addr);
                self.start(planned, target);
                true
            }
            DnsPoll::Done(Ok(_)) => {
                self.failures
                    .push(format!("{}: no address found", target.host));
                true
            }
            DnsPoll::Done(Err(e)) => {
                self.failures
                    .push(format!("{}: {}", planned.uri, Chain(&e)));
                true
            }
        }
    }

    /// Acts on a finished job: report, follow a redirect.
    fn finish_current(&mut self) -> bool {
        let Some((index, _)) = &self.current else {
            return false;
        };
        let index = *index;
        let Some(job) = self.fetch.jobs.get(index) else {
            return false;
        };
        let Some(outcome) = job.outcome.clone() else {
            return false;
        };
        if let Some(bar) = &job.sink.progress {
            bar.finish_and_clear();
        }
        let location = job.sink.location.clone();
        let body_time = job.sink.head_at.map(|at| at.elapsed().as_secs_f64());
        let Some((_, planned)) = self.current.take() else {
            return false;
        };
        match outcome {
            Outcome::Failed(e) => self.failures.push(format!("{}: {e}", planned.uri)),
            Outcome::Done { status, bytes } => {
                match body_time {
                    Some(secs) => eprintln!("* {bytes} bytes, {secs:.6} s after the response head"),
                    None => eprintln!("* {bytes} bytes"),
                }
                if self.args.location && status.is_redirection() {
                    if let Some(location) = location {
                        if planned.redirects >= self.args.max_redirs {
                            self.failures.push(format!(
                                "{}: more than {} redirects",
                                planned.uri, self.args.max_redirs
                            ));
                        } else {
                            match join(&planned.uri, &location) {
                                Ok(uri) => self.queue.push_front(Planned {
                                    uri,
                                    redirects: planned.redirects + 1,
                                }),
                                Err(e) => self
                                    .failures
                                    .push(format!("bad redirect '{location}': {e:#}")),
                            }
                        }
                    }
                }
            }
        }
        let _ = self.out.borrow_mut().flush();
        true
    }
}

/// Resolves a Location value against the URL it came from (RFC 3986 §5 with the url
/// crate: relative paths, `..`, `?query`, `//host`). The fragment is dropped: it is never
/// sent.
fn join(base: &Uri, location: &str) -> anyhow::Result<Uri> {
    let base = url::Url::parse(&base.to_string())?;
    let mut target = base.join(location)?;
    target.set_fragment(None);
    Ok(target.as_str().parse()?)
}

impl Application for Get {
    fn poll(&mut self, stack: &mut Stack, now: Instant) -> bool {
        if self.deadline.is_none() {
            self.deadline = self
                .args
                .max_time
                .map(|s| now + smoltcp::time::Duration::from_secs(s));
        }
        let mut progress = false;
        for _ in 0..8 {
            let mut turn = self.next(stack);
            turn |= self.poll_dns(stack);
            turn |= self.fetch.poll(stack, now);
            turn |= self.finish_current();
            progress |= turn;
            if !turn {
                break;
            }
        }
        if self.deadline.is_some_and(|d| now >= d) && !self.is_finished() {
            self.failures.push(format!(
                "gave up after --max-time {}s",
                self.args.max_time.unwrap_or(0)
            ));
            self.queue.clear();
            self.resolving = None;
            self.current = None;
            self.fetch.shutdown(stack, now);
        }
        progress
    }

    fn poll_at(&self, now: Instant) -> Option<Instant> {
        [self.fetch.poll_at(now), self.deadline]
            .into_iter()
            .flatten()
            .min()
    }

    fn shutdown(&mut self, stack: &mut Stack, now: Instant) {
        self.queue.clear();
        self.fetch.shutdown(stack, now);
    }

    fn is_finished(&self) -> bool {
        self.queue.is_empty() && self.resolving.is_none() && self.current.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_entries() {
        let pin = parse_resolve("example.test:443:10.7.0.1").unwrap();
        assert_eq!((pin.host.as_str(), pin.port), ("example.test", 443));
        assert!(parse_resolve("example.test:443:[fd00:7::1]").is_ok());
        assert!(parse_resolve("example.test:443").is_err());
        assert!(parse_resolve("example.test:x:10.7.0.1").is_err());
    }

    #[test]
    fn redirect_targets() {
        let page = "http://a.test/dir/page?x=1";
        for (base, location, target) in [
            (page, "/other", "http://a.test/other"),
            (page, "next", "http://a.test/dir/next"),
            (page, "https://b.test/", "https://b.test/"),
            // A query alone keeps the path and replaces the query.
            (page, "?y=2", "http://a.test/dir/page?y=2"),
            // A network-path reference keeps the scheme only.
            (page, "//c.test:8080/x", "http://c.test:8080/x"),
            // Dot segments are removed, never above the root.
            (page, "../up", "http://a.test/up"),
            (page, "./a/../../../b?q", "http://a.test/b?q"),
            // The base's port stays; the fragment is not part of a request.
            (
                "https://a.test:8443/dir/",
                "next#part",
                "https://a.test:8443/dir/next",
            ),
        ] {
            let base: Uri = base.parse().unwrap();
            assert_eq!(
                join(&base, location).unwrap().to_string(),
                target,
                "{base} + {location}"
            );
        }
        let base: Uri = page.parse().unwrap();
        assert!(join(&base, "http://[::1").is_err());
    }
}
