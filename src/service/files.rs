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

/// Decodes `%XX` escapes (percent-encoding) into UTF-8. A `%` that does not start an escape
/// is refused (RFC 3986 §2.1: the crate would keep it as it is).
fn percent_decode(s: &str) -> Option<String> {
    let escapes_well_formed = s.split('%').skip(1).all(|rest| {
        rest.get(..2)
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if !escapes_well_formed {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

/// The content type for a file name, from its extension (mime_guess); text types are
/// served as UTF-8, anything unknown as `application/octet-stream`.
pub fn content_type(path: &Path) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    if mime.type_() == mime_guess::mime::TEXT && mime.get_param("charset").is_none() {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.to_string()
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

/// Resolves a `Range` header for a resource of `len` bytes (RFC 9110 §14.2, parsed by
/// http-range-header). One satisfiable range is served as a part. Several satisfiable
/// ranges, other units, syntax errors and abusive sets (too many, overlapping) serve the
/// whole resource, which the RFC allows (no multipart/byteranges). When no range overlaps
/// the resource, the answer is 416.
pub fn parse_range(value: &str, len: u64) -> RangeRequest {
    use http_range_header::RangeUnsatisfiableError;
    let ranges = match http_range_header::parse_range_header(value) {
        Ok(parsed) => parsed.validate(len),
        Err(e) => Err(e),
    };
    match ranges.as_deref() {
        Ok([one]) => RangeRequest::Part {
            start: *one.start(),
            end: *one.end(),
        },
        Ok(_) => RangeRequest::Whole,
        Err(RangeUnsatisfiableError::Unsatisfiable) => RangeRequest::Unsatisfiable,
        Err(_) => RangeRequest::Whole,
    }
}

/// Whether an `If-Range` value lets the range through: only an exact match of the file's
/// `Last-Modified` date (there are no entity tags). Otherwise the whole file is sent.
fn if_range_matches(value: Option<&str>, last_modified: Option<&str>) -> bool {
    match value {
        None => true,
        Some(value) => last_modified.is_some_and(|date| date == value.trim()),
    }
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

    // Ranges are defined for GET only (RFC 9110 §14.2); HEAD answers as GET without one.
    let if_range = request
        .headers()
        .get(header::IF_RANGE)
        .map(|v| v.to_str().unwrap_or(""));
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| request.method() == Method::GET)
        .filter(|_| if_range_matches(if_range, last_modified.as_deref()))
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
    set(&mut r, header::CONTENT_TYPE, Some(&content_type(path)));
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
        // The unit is case-insensitive; a suffix on an empty file selects nothing.
        assert_eq!(parse_range("Bytes=0-0", 100), Part { start: 0, end: 0 });
        assert_eq!(parse_range("bytes=-5", 0), Whole);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        // Positions beyond u64 select up to the end.
        assert_eq!(
            parse_range("bytes=10-99999999999999999999", 100),
            Part { start: 10, end: 99 }
        );
        // Several ranges: the satisfiable ones decide. One left is served alone, none is a
        // 416, several are the whole file.
        assert_eq!(
            parse_range("bytes=0-1, 500-600", 100),
            Part { start: 0, end: 1 }
        );
        assert_eq!(parse_range("bytes=500-600, 200-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-10, 0-1", 100), Whole);
        // Abusive sets are ignored: many overlapping ranges, a thousand ranges.
        assert_eq!(parse_range("bytes=0-50, 10-60, 20-70", 100), Whole);
        let many = vec!["0-0"; 1000].join(",");
        assert_eq!(parse_range(&format!("bytes={many}"), 100), Whole);
        // Syntax errors are ignored too.
        assert_eq!(parse_range("bytes=1-2-3", 100), Whole);
        assert_eq!(parse_range("bytes=", 100), Whole);
        assert_eq!(parse_range("bytes=+1-2", 100), Whole);
    }

    #[test]
    fn if_range_needs_the_exact_date() {
        let date = "Fri, 04 Dec 2026 10:00:00 GMT";
        assert!(if_range_matches(None, Some(date)));
        assert!(if_range_matches(Some(date), Some(date)));
        assert!(!if_range_matches(
            Some("Fri, 04 Dec 2026 10:00:01 GMT"),
            Some(date)
        ));
        assert!(!if_range_matches(Some("\"etag\""), Some(date)));
        assert!(!if_range_matches(Some(date), None));
    }

    #[test]
    fn escapes_decode_to_utf8() {
        assert_eq!(
            safe_relative_path("/caf%C3%A9/a%20b"),
            Some(PathBuf::from("café/a b"))
        );
        assert_eq!(safe_relative_path("/a%2"), None);
        assert_eq!(safe_relative_path("/a%"), None);
        assert_eq!(safe_relative_path("/%ff"), None, "not UTF-8");
        assert_eq!(safe_relative_path("/a%2Fb"), Some(PathBuf::from("a/b")));
    }

    #[test]
    fn types() {
        assert_eq!(
            content_type(Path::new("a.HTML")),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.bin")), "application/octet-stream");
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
        assert_eq!(
            content_type(Path::new("app.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("x/logo.PNG")), "image/png");
        assert_eq!(content_type(Path::new("a.wasm")), "application/wasm");
        assert_eq!(content_type(Path::new("a.json")), "application/json");
    }
}
