//! A static file server: GET and HEAD under a root directory, with content types, single
//! byte ranges, `Last-Modified`/`If-Modified-Since`, `index.html` for directories, optional
//! listings (off by default), and no way out of the root (`..`, encoded or not, and
//! symlinks leading outside are refused).

use std::fs::{self, File};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use super::{text_response, Body, RequestBody};

/// Serves files under a directory.
#[derive(Debug, Clone)]
pub struct StaticFiles {
    root: PathBuf,
    listings: bool,
}

/// Errors setting up a file server.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The root is missing or not a directory.
    #[error("--root {path}: {reason}")]
    Root {
        /// The path given.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl StaticFiles {
    /// Serves `root` (which must be a directory). `listings` enables directory listings.
    pub fn new(root: impl AsRef<Path>, listings: bool) -> Result<Self, FilesError> {
        let path = root.as_ref();
        let err = |reason: String| FilesError::Root {
            path: path.display().to_string(),
            reason,
        };
        let root = path.canonicalize().map_err(|e| err(e.to_string()))?;
        if !root.is_dir() {
            return Err(err("not a directory".into()));
        }
        Ok(StaticFiles { root, listings })
    }

    /// The directory served (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The methods static files take, for [`ServerConfig::methods`](super::ServerConfig)
    /// (the server answers `OPTIONS *` with them).
    pub const METHODS: [Method; 2] = [Method::GET, Method::HEAD];

    /// Answers one request.
    pub fn handle(&self, request: &Request<RequestBody>) -> Response<Body> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return super::method_not_allowed(request.method(), "GET, HEAD");
        }
        let Some(relative) = safe_relative_path(request.uri().path()) else {
            return text_response(StatusCode::BAD_REQUEST, "bad path\n");
        };
        let mut path = self.root.join(&relative);
        // Symlinks must not lead out of the root.
        match path.canonicalize() {
            Ok(real) if real.starts_with(&self.root) => path = real,
            Ok(_) => return text_response(StatusCode::FORBIDDEN, "outside the served directory\n"),
            Err(_) => return not_found(),
        }
        if path.is_dir() {
            if !request.uri().path().ends_with('/') {
                let mut r = text_response(StatusCode::MOVED_PERMANENTLY, "directory\n");
                let location = format!("{}/", request.uri().path());
                if let Ok(v) = HeaderValue::from_str(&location) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                return r;
            }
            let index = path.join("index.html");
            if index.is_file() {
                path = index;
            } else if self.listings {
                return listing(&path, request.uri().path());
            } else {
                return text_response(StatusCode::FORBIDDEN, "directory listing is off\n");
            }
        }
        serve_file(&path, request)
    }
}

fn not_found() -> Response<Body> {
    text_response(StatusCode::NOT_FOUND, "not found\n")
}

/// Decodes the URL path and returns it as a relative path made only of normal components,
/// or `None` for anything that could escape (`..`, NUL, backslashes, bad encoding).
pub fn safe_relative_path(url_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(url_path)?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return None;
    }
    let mut out = PathBuf::new();
    for component in Path::new(&decoded).components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The content type for a file name.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        Some("xml") => "application/xml",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("wasm") => "application/wasm",
        Some("pdf") => "application/pdf",
        Some("mp4") => "video/mp4",
        Some("woff2") => "font/woff2",
        Some("gz") => "application/gzip",
        Some("zip") => "application/zip",
        _ => "application/octet-stream",
    }
}

/// A byte range request, resolved against a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: serve the whole file.
    Whole,
    /// Serve bytes `start..=end`.
    Part {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// The range cannot be satisfied (416).
    Unsatisfiable,
}

/// Parses a `Range` header for a resource of `len` bytes. Only a single `bytes=` range is
/// honoured; several ranges or other units serve the whole resource (RFC 9110 allows it).
pub fn parse_range(value: &str, len: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix: the last N bytes.
        if !digits(last) {
            return RangeRequest::Whole;
        }
        let Ok(n) = last.parse::<u64>() else {
            return RangeRequest::Whole;
        };
        if n == 0 || len == 0 {
            return RangeRequest::Unsatisfiable;
        }
        return RangeRequest::Part {
            start: len.saturating_sub(n),
            end: len - 1,
        };
    }
    if !digits(first) || !(last.is_empty() || digits(last)) {
        return RangeRequest::Whole;
    }
    let Ok(start) = first.parse::<u64>() else {
        return RangeRequest::Unsatisfiable;
    };
    if start >= len {
        return RangeRequest::Unsatisfiable;
    }
    let end = if last.is_empty() {
        len - 1
    } else {
        match last.parse::<u64>() {
            Ok(end) if end >= start => end.min(len - 1),
            Ok(_) => return RangeRequest::Whole,
            Err(_) => len - 1,
        }
    };
    RangeRequest::Part { start, end }
}

fn serve_file(path: &Path, request: &Request<RequestBody>) -> Response<Body> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return text_response(StatusCode::FORBIDDEN, "not readable\n")
        }
        Err(_) => return not_found(),
    };
    let meta = match file.metadata() {
        Ok(m) if m.is_file() => m,
        _ => return not_found(),
    };
    let len = meta.len();
    let modified = meta.modified().ok().map(whole_seconds);
    let last_modified = modified.map(httpdate::fmt_http_date);

    if let (Some(modified), Some(since)) = (
        modified,
        request
            .headers()
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok()),
    ) {
        if request.headers().get(header::IF_NONE_MATCH).is_none() && modified <= since {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            set(&mut r, header::LAST_MODIFIED, last_modified.as_deref());
            return r;
        }
    }

    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map_or(RangeRequest::Whole, |v| parse_range(v, len));
    let (status, start, count) = match range {
        RangeRequest::Whole => (StatusCode::OK, 0, len),
        RangeRequest::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        RangeRequest::Unsatisfiable => {
            let mut r = text_response(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
            set(
                &mut r,
                header::CONTENT_RANGE,
                Some(&format!("bytes */{len}")),
            );
            return r;
        }
    };
    let body = match Body::file(file, start, count) {
        Ok(b) => b,
        Err(e) => return text_response(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    set(&mut r, header::CONTENT_TYPE, Some(content_type(path)));
    set(&mut r, header::ACCEPT_RANGES, Some("bytes"));
    set(&mut r, header::LAST_MODIFIED, last_modified.as_deref());
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {}-{}/{}", start, start + count - 1, len);
        set(&mut r, header::CONTENT_RANGE, Some(&value));
    }
    r
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

fn set(r: &mut Response<Body>, name: header::HeaderName, value: Option<&str>) {
    if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
        r.headers_mut().insert(name, v);
    }
}

fn listing(dir: &Path, url_path: &str) -> Response<Body> {
    let Ok(entries) = fs::read_dir(dir) else {
        return text_response(StatusCode::FORBIDDEN, "cannot read directory\n");
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let mut name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                name.push('/');
            }
            name
        })
        .collect();
    names.sort();
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('"', "&quot;")
    };
    let mut page = format!(
        "<!doctype html>\n<html><head><title>{0}</title></head><body><h1>{0}</h1><ul>\n",
        esc(url_path)
    );
    for name in names {
        page.push_str(&format!("<li><a href=\"{0}\">{0}</a></li>\n", esc(&name)));
    }
    page.push_str("</ul></body></html>\n");
    let mut r = Response::new(Body::from(page));
    set(
        &mut r,
        header::CONTENT_TYPE,
        Some("text/html; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_get_501_known_ones_405() {
        let files = StaticFiles::new(env!("CARGO_MANIFEST_DIR"), false).unwrap();
        let answer = |method: &str, target: &str| {
            let request = Request::builder()
                .method(method)
                .uri(target)
                .body(RequestBody::empty())
                .unwrap();
            files.handle(&request)
        };
        assert_eq!(answer("FOO", "/").status(), StatusCode::NOT_IMPLEMENTED);
        let r = answer("PUT", "/Cargo.toml");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
    }

    #[test]
    fn traversal_is_refused() {
        assert_eq!(
            safe_relative_path("/a/b.txt"),
            Some(PathBuf::from("a/b.txt"))
        );
        assert_eq!(safe_relative_path("/"), Some(PathBuf::new()));
        assert_eq!(safe_relative_path("/../etc/passwd"), None);
        assert_eq!(safe_relative_path("/a/%2e%2e/%2e%2e/etc"), None);
        assert_eq!(safe_relative_path("/a%00b"), None);
        assert_eq!(safe_relative_path("/a%5c..%5cb"), None);
        assert_eq!(safe_relative_path("/bad%zz"), None);
        assert_eq!(safe_relative_path("/./a/./b"), Some(PathBuf::from("a/b")));
    }

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range("bytes=0-9", 100), Part { start: 0, end: 9 });
        assert_eq!(parse_range("bytes=90-", 100), Part { start: 90, end: 99 });
        assert_eq!(parse_range("bytes=-10", 100), Part { start: 90, end: 99 });
        assert_eq!(parse_range("bytes=-1000", 100), Part { start: 0, end: 99 });
        assert_eq!(
            parse_range("bytes=50-1000", 100),
            Part { start: 50, end: 99 }
        );
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Whole);
        assert_eq!(parse_range("items=0-1", 100), Whole);
        assert_eq!(parse_range("bytes=9-3", 100), Whole);
        assert_eq!(parse_range("bytes=a-b", 100), Whole);
    }

    #[test]
    fn types() {
        assert_eq!(
            content_type(Path::new("a.HTML")),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.bin")), "application/octet-stream");
    }
}
