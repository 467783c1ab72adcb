//! Just enough WebDriver (W3C, JSON over HTTP) to drive Debian's headless Chromium through
//! its `chromedriver`: start the driver on a free loopback port, open one session, load a
//! page, run scripts in it, take screenshots. Every request has a timeout; dropping the
//! [`Browser`] ends the session and kills the driver and the browser it started.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{clean_env, clock, die_with_test, free_tcp_port, Deadline};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long chromedriver may take to answer `/status` after it starts.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(20);
/// One WebDriver request: creating a session starts Chromium, navigation loads a page.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Ending the session when the browser is dropped.
const DELETE_TIMEOUT: Duration = Duration::from_secs(10);
/// What a page's scripts and loads may take inside the browser (below `REQUEST_TIMEOUT`).
const SCRIPT_TIMEOUT_MS: u64 = 10_000;
const PAGE_LOAD_TIMEOUT_MS: u64 = 30_000;
/// Driver log lines printed when a test using the browser fails.
const LOG_TAIL_LINES: usize = 30;

/// Why the browser cannot run here, or `None` when Chromium and chromedriver are installed.
pub fn missing() -> Option<String> {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        None
    } else {
        Some(format!(
            "{} not installed (Debian packages chromium and chromium-driver)",
            missing.join(" and ")
        ))
    }
}

/// One headless Chromium session driven through chromedriver.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    session: Option<String>,
    driver: Child,
    log: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and opens a session with a fresh profile.
    pub fn start() -> Result<Self, String> {
        let profile = tempfile::Builder::new()
            .prefix("consentry-chromium-")
            .tempdir()
            .map_err(|e| format!("profile dir: {e}"))?;
        let log = profile.path().join("chromedriver.log");
        let port = free_tcp_port();
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        clean_env(&mut cmd);
        // Its own process group, so that dropping the browser can end Chromium too; and the
        // driver dies with the test however that ends.
        cmd.process_group(0);
        die_with_test(&mut cmd);
        let driver = cmd
            .spawn()
            .map_err(|e| format!("cannot start {CHROMEDRIVER}: {e}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let mut browser = Browser {
            rt,
            http,
            base: format!("http://127.0.0.1:{port}"),
            session: None,
            driver,
            log,
            _profile: profile,
        };
        browser.wait_for_driver()?;
        let user_data = browser._profile.path().join("profile");
        let caps = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        format!("--user-data-dir={}", user_data.display()),
                        "--window-size=1400,1000",
                    ],
                },
            }},
        });
        let created = browser.call(reqwest::Method::POST, "/session", Some(caps))?;
        let id = created["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no sessionId in {created}"))?
            .to_owned();
        browser.session = Some(id);
        browser.session_call(
            reqwest::Method::POST,
            "/timeouts",
            Some(json!({ "script": SCRIPT_TIMEOUT_MS, "pageLoad": PAGE_LOAD_TIMEOUT_MS, "implicit": 0 })),
        )?;
        Ok(browser)
    }

    fn wait_for_driver(&mut self) -> Result<(), String> {
        let deadline = Deadline::after(DRIVER_START_TIMEOUT);
        loop {
            if let Ok(Some(status)) = self.driver.try_wait() {
                return Err(format!(
                    "chromedriver exited at start ({status}): {}",
                    self.log_tail()
                ));
            }
            match self.call(reqwest::Method::GET, "/status", None) {
                Ok(v) if v["ready"] == true => return Ok(()),
                Ok(v) => {
                    if deadline.remaining().is_zero() {
                        return Err(format!("chromedriver not ready: {v}"));
                    }
                }
                Err(e) => {
                    if deadline.remaining().is_zero() {
                        return Err(format!("chromedriver did not answer: {e}"));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One WebDriver command; its `value` on success, the driver's error otherwise.
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        self.call_within(method, path, body, REQUEST_TIMEOUT)
    }

    fn call_within(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        limit: Duration,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url).timeout(limit);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let what = format!("{method} {path}");
        self.rt.block_on(async {
            let response = tokio::time::timeout(limit, request.send())
                .await
                .map_err(|_| format!("{what}: no answer within {limit:?}"))?
                .map_err(|e| format!("{what}: {e}"))?;
            let status = response.status();
            let text = tokio::time::timeout(limit, response.text())
                .await
                .map_err(|_| format!("{what}: body not read within {limit:?}"))?
                .map_err(|e| format!("{what}: reading body: {e}"))?;
            let v: Value =
                serde_json::from_str(&text).map_err(|e| format!("{what}: {e}: {text}"))?;
            let value = v.get("value").cloned().unwrap_or(Value::Null);
            if status.is_success() {
                Ok(value)
            } else {
                Err(format!(
                    "{what}: HTTP {status}: {} {}",
                    value["error"].as_str().unwrap_or("?"),
                    value["message"].as_str().unwrap_or(&text)
                ))
            }
        })
    }

    fn session_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let id = self.session.as_deref().ok_or("no session")?;
        self.call(method, &format!("/session/{id}{path}"), body)
    }

    /// Loads `url` and waits for the page's load event.
    pub fn goto(&self, url: &str) -> Result<(), String> {
        self.session_call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .map(|_| ())
    }

    /// Runs `script` (a function body; `return` gives the result) in the page.
    pub fn execute(&self, script: &str) -> Result<Value, String> {
        self.session_call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Saves a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) -> Result<(), String> {
        let v = self.session_call(reqwest::Method::GET, "/screenshot", None)?;
        let b64 = v
            .as_str()
            .ok_or_else(|| format!("screenshot: not a string: {v}"))?;
        let png = base64_decode(b64).ok_or("screenshot: invalid base64")?;
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(id) = self.session.take() {
            let _ = self.call_within(
                reqwest::Method::DELETE,
                &format!("/session/{id}"),
                None,
                DELETE_TIMEOUT,
            );
        }
        if std::thread::panicking() {
            eprintln!(
                "\n===== chromedriver log (last lines, {:.1}s into the test) =====\n{}",
                clock::since_test_start().as_secs_f64(),
                self.log_tail()
            );
        }
        // The driver and whatever it started that is still running: its process group.
        if let Ok(pgid) = libc::pid_t::try_from(self.driver.id()) {
            // SAFETY: kill(2) on the process group of a child this process spawned with
            // process_group(0) and has not reaped yet, so the group id is still ours.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (RFC 4648, with padding), as WebDriver returns screenshots.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let body = bytes
        .strip_suffix(b"==")
        .or_else(|| bytes.strip_suffix(b"="))
        .unwrap_or(&bytes);
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0_u32, 0_u32);
    for &c in body {
        acc = ((acc << 6) | sextet(c)?) & 0xffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

#[test]
fn base64_decodes_padded_text() {
    assert_eq!(base64_decode("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
    assert_eq!(base64_decode("aGk=").as_deref(), Some(&b"hi"[..]));
    assert_eq!(base64_decode("YWJj").as_deref(), Some(&b"abc"[..]));
    assert_eq!(
        base64_decode("iVBORw0KGgo=").as_deref(),
        Some(&b"\x89PNG\r\n\x1a\n"[..])
    );
    assert!(base64_decode("a$b=").is_none());
}
