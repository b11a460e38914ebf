//! A Debian archive on loopback for the tests: a small HTTP server over
//! real, signed archive files (a copy of the bookworm and
//! bookworm-backports indexes and the packages the default profile needs,
//! kept in the cache by `scripts/setup-host.sh`). Nothing beyond 127.0.0.1.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The archive's files, made once by `scripts/setup-host.sh`; a test that
/// cannot find them fails and says so (it never passes without them).
pub fn archive_dir() -> PathBuf {
    let dir = modvm::paths::cache_dir(None).join("test-archive");
    let pool_has_debs = super::walk(&dir.join("pool"))
        .iter()
        .any(|p| p.extension().is_some_and(|x| x == "deb"));
    assert!(
        dir.join("dists/bookworm/InRelease").is_file()
            && dir.join("dists/bookworm/main/binary-amd64/Packages").is_file()
            && dir.join("dists/bookworm-backports/InRelease").is_file()
            && pool_has_debs,
        "no test archive in {}: run `bash scripts/setup-host.sh` once (it downloads the default profile's packages for this test)",
        dir.display()
    );
    dir
}

/// A GET-only HTTP/1.1 server for an archive directory, at
/// `http://127.0.0.1:PORT/debian/`. `by-hash` paths are answered by
/// looking the SHA-256 up in the InRelease it serves (apt checks the
/// content against it); everything else it does not have is a 404, so
/// apt must fall back from the compressed indexes it asks for first.
pub struct Server {
    port: u16,
    /// Every request as "STATUS PATH", in order.
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Server {
    /// Stops accepting (a connection of our own wakes the accept loop).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

impl Server {
    /// Serves `root`; `inrelease` replaces its InRelease when given.
    pub fn start(root: &Path, inrelease: Option<Vec<u8>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        // Each suite's InRelease, and its files by SHA-256.
        let mut suites = HashMap::new();
        for e in std::fs::read_dir(root.join("dists")).unwrap().flatten() {
            let suite = e.file_name().to_string_lossy().into_owned();
            let text = match (&inrelease, suite.as_str()) {
                (Some(b), "bookworm") => b.clone(),
                _ => std::fs::read(e.path().join("InRelease")).unwrap(),
            };
            let names = by_hash_names(&String::from_utf8_lossy(&text));
            suites.insert(suite, (text, names));
        }
        let shared = Arc::new((root.to_path_buf(), suites));
        let server_log = log.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { return };
                let (shared, log) = (shared.clone(), server_log.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &shared.0, &shared.1, &log);
                });
            }
        });
        Server { port, log, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/debian", self.port)
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// SHA-256 → path under the suite's directory, from its Release text.
fn by_hash_names(release: &str) -> HashMap<String, String> {
    release
        .lines()
        .skip_while(|l| !l.starts_with("SHA256:"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3).then(|| (f[0].to_string(), f[2].to_string()))
        })
        .collect()
}

/// Answers the requests of one connection in order (apt pipelines them).
fn serve(
    conn: TcpStream,
    root: &Path,
    suites: &Suites,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request)? == 0 {
            return Ok(());
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
                break;
            }
        }
        let mut words = request.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let path = &percent_decoded(path);
        let body: Option<Vec<u8>> = match path.strip_prefix("/debian/") {
            _ if method != "GET" => None,
            Some(rel) if rel.contains("..") => None,
            Some(rel) => {
                let in_suite = rel
                    .strip_prefix("dists/")
                    .and_then(|r| r.split_once('/'))
                    .and_then(|(suite, r)| Some((suites.get(suite)?, suite, r)));
                match in_suite {
                    Some(((text, _), _, "InRelease")) => Some(text.clone()),
                    Some(((_, names), suite, r)) if r.contains("/by-hash/SHA256/") => {
                        let hash = r.rsplit('/').next().unwrap_or("");
                        names.get(hash).and_then(|n| {
                            std::fs::read(root.join(format!("dists/{suite}/{n}"))).ok()
                        })
                    }
                    _ => std::fs::read(root.join(rel)).ok(),
                }
            }
            None => None,
        };
        let status = if body.is_some() {
            "200 OK"
        } else {
            "404 Not Found"
        };
        log.lock().unwrap().push(format!("{} {path}", &status[..3]));
        let body = body.unwrap_or_default();
        write!(
            out,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
            body.len()
        )?;
        out.write_all(&body)?;
        out.flush()?;
    }
}

/// Per suite: its InRelease, and SHA-256 → path under `dists/<suite>/`.
type Suites = HashMap<String, (Vec<u8>, HashMap<String, String>)>;

/// `%2b` and the like, as apt writes `+` in pool paths.
fn percent_decoded(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
