//! A real browser for the portal tests: Debian's `chromium`, headless,
//! driven over WebDriver (`fantoccini`) through its `chromedriver`, which
//! is started on a free port for each [`Chrome`] and ended on drop (the
//! browser session first, so no Chromium is left behind).
//!
//! Both come from `scripts/setup.sh` (packages `chromium` and
//! `chromium-driver`). Without them a browser test prints `skipping …` and
//! passes — except with `CI=true`, where it fails.
//!
//! Screenshots go to `$CARGO_TARGET_DIR/portal-screenshots/` (the target
//! directory next to the test binary when that variable is unset).

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::harness::free_port;

/// Debian's Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's ChromeDriver (package `chromium-driver`).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a test waits for something to show in the page.
pub const WAIT: Duration = Duration::from_secs(10);
/// Wide and narrow window sizes for screenshots.
pub const WIDE: (u32, u32) = (1280, 900);
/// A phone-sized window.
pub const NARROW: (u32, u32) = (400, 860);

/// The narrow top bar holds the brand, sign-out and one row of page links.
const MAX_TOP_BAR_PX: f64 = 120.0;
/// The height of the portal's sidebar (0 on pages without one).
const TOP_BAR_HEIGHT: &str =
    "const bar = document.querySelector('.shell > .sidebar'); return bar ? bar.getBoundingClientRect().height : 0;";

/// True when Chromium and ChromeDriver are installed. Otherwise says why
/// the test is skipped, or panics when `CI=true`.
pub fn available() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    let message =
        format!("{CHROMIUM} or {CHROMEDRIVER} is missing: run scripts/setup.sh (Debian chromium, chromium-driver)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("browser tests cannot run with CI=true: {message}");
    }
    // Past the test harness's output capture, like the PostgreSQL tests.
    let _ = writeln!(std::io::stderr(), "skipping browser test: {message}");
    false
}

/// Where screenshots are saved (created on first use).
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| {
        // target/debug/deps/control_plane-… → target
        let exe = std::env::current_exe().expect("test binary path");
        exe.ancestors().nth(3).expect("target directory").to_path_buf()
    });
    let dir = target.join("portal-screenshots");
    std::fs::create_dir_all(&dir).expect("create the screenshot directory");
    dir
}

/// A headless Chromium with its ChromeDriver.
pub struct Chrome {
    driver: Child,
    port: u16,
    session: String,
    client: Client,
}

impl Chrome {
    /// Starts ChromeDriver and a browser session with a fresh profile in `dir`.
    pub async fn start(dir: &Path, label: &str) -> Self {
        let profile = dir.join(format!("chrome-{label}"));
        std::fs::create_dir_all(&profile).expect("browser profile directory");
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let log = dir.join(format!("chromedriver-{label}-{port}.log"));
            let file = File::create(&log).expect("chromedriver log");
            let driver = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdin(Stdio::null())
                .stdout(file.try_clone().expect("log handle"))
                .stderr(file)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {CHROMEDRIVER}: {e}"));
            let mut chrome = Pending { driver: Some(driver), port, log };
            match chrome.connect(&profile).await {
                Ok(ready) => return ready,
                Err(error) => last = error,
            }
        }
        panic!("chromium did not start:\n{last}");
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Resizes the window.
    pub async fn resize(&self, (width, height): (u32, u32)) {
        self.client.set_window_size(width, height).await.expect("resize the window");
    }

    /// The first element matching `css`, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        match self.client.wait().at_most(WAIT).for_element(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => panic!("no `{css}` within {WAIT:?} ({e}); page text:\n{}", self.page_text().await),
        }
    }

    /// Whether an element matches `css` now.
    pub async fn exists(&self, css: &str) -> bool {
        self.client.find_all(Locator::Css(css)).await.is_ok_and(|found| !found.is_empty())
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        element.click().await.unwrap_or_else(|e| panic!("click `{css}`: {e}"));
    }

    /// Types `text` into the first element matching `css` (after clearing it).
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        element.clear().await.unwrap_or_else(|e| panic!("clear `{css}`: {e}"));
        element.send_keys(text).await.unwrap_or_else(|e| panic!("type into `{css}`: {e}"));
    }

    /// Waits until the text of the first element matching `css` contains
    /// `expected`; returns that text.
    pub async fn wait_text(&self, css: &str, expected: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                if let Ok(text) = element.text().await {
                    if text.contains(expected) {
                        return text;
                    }
                    last = text;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "`{css}` did not show {expected:?} within {WAIT:?}; it shows {last:?}; page text:\n{}",
            self.page_text().await
        )
    }

    /// Waits until `script` (a function body returning a truthy value) holds.
    pub async fn wait_until(&self, what: &str, script: &str) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.eval(script).await.as_bool() == Some(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what}: not within {WAIT:?}; page text:\n{}", self.page_text().await);
    }

    /// Runs `script` (a function body) in the page; returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, Vec::new()).await.unwrap_or_else(|e| panic!("run script: {e}\n{script}"))
    }

    /// The visible text of the page (for failure messages).
    pub async fn page_text(&self) -> String {
        let text = self.client.execute("return document.body ? document.body.innerText : ''", Vec::new()).await;
        text.ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    }

    /// Saves a PNG of the window as `<screenshot_dir>/<name>.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        // Let layout, fonts and transitions settle.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let png = self.client.screenshot().await.unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }

    /// Saves a wide and a narrow screenshot (`<name>-wide.png`, `<name>-narrow.png`), back to wide after.
    /// In the narrow one the portal's sidebar is a top bar: it must keep its
    /// own height however short the page is (it once stretched to 225 px).
    pub async fn screenshots(&self, name: &str) {
        self.resize(WIDE).await;
        self.screenshot(&format!("{name}-wide")).await;
        self.resize(NARROW).await;
        self.screenshot(&format!("{name}-narrow")).await;
        let bar = self.eval(TOP_BAR_HEIGHT).await.as_f64().unwrap_or(0.0);
        assert!(bar <= MAX_TOP_BAR_PX, "{name}-narrow: the top bar is {bar} px tall (at most {MAX_TOP_BAR_PX})");
        self.resize(WIDE).await;
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        // Ending the session quits Chromium; then the driver goes.
        delete_session(self.port, &self.session);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A started driver without a session yet; killed on drop unless it becomes a [`Chrome`].
struct Pending {
    driver: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Pending {
    async fn connect(&mut self, profile: &Path) -> Result<Chrome, String> {
        let url = format!("http://127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(15);
        let log = || std::fs::read_to_string(&self.log).unwrap_or_default();
        loop {
            if let Some(Ok(Some(status))) = self.driver.as_mut().map(Child::try_wait) {
                return Err(format!("chromedriver exited with {status}:\n{}", log()));
            }
            if reqwest::get(format!("{url}/status")).await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("chromedriver not ready:\n{}", log()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--hide-scrollbars".to_owned(),
            "--force-device-scale-factor=1".to_owned(),
            format!("--window-size={},{}", WIDE.0, WIDE.1),
            format!("--user-data-dir={}", profile.display()),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let Value::Object(capabilities) = capabilities else { unreachable!("an object") };
        let client = ClientBuilder::native()
            .capabilities(capabilities)
            .connect(&url)
            .await
            .map_err(|e| format!("no browser session: {e}\n{}", log()))?;
        let session = client.session_id().await.ok().flatten().unwrap_or_default();
        let driver = self.driver.take().expect("the driver is still here");
        Ok(Chrome { driver, port: self.port, session, client })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut driver) = self.driver.take() {
            let _ = driver.kill();
            let _ = driver.wait();
        }
    }
}

/// `DELETE /session/{id}` with a plain blocking socket (drop cannot await).
fn delete_session(port: u16, session: &str) {
    if session.is_empty() {
        return;
    }
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request =
        format!("DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_ok() {
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
    }
}
