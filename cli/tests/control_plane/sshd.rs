//! A real OpenSSH server for the tunnel tests: `/usr/sbin/sshd` in the
//! foreground on a free loopback port, with a throwaway host key, one
//! authorized client key (both made with `ssh-keygen` in the test's
//! directory) and a configuration of its own (no PAM, no passwords, no
//! strict modes). `scripts/setup.sh` installs `openssh-server` and
//! `openssh-client`; a missing one fails the test with that advice, in CI
//! and everywhere else — nothing is skipped.
//!
//! sshd needs its privilege-separation directory (`/run/sshd`), which is
//! created when missing (the tests run as root here and in CI).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::free_port;

/// Where Debian's `openssh-server` puts the daemon.
const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd, killed on drop.
pub struct Sshd {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The private key it accepts.
    pub client_key: PathBuf,
    /// The user to log in as (whoever runs the tests).
    pub user: String,
    log: PathBuf,
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e} (run scripts/setup.sh)"));
    assert!(output.status.success(), "{what}: {}", String::from_utf8_lossy(&output.stderr));
}

fn keygen(path: &Path) {
    let _ = std::fs::remove_file(path);
    run(
        Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "portcullis-test", "-f"]).arg(path),
        "ssh-keygen",
    );
}

/// The name of the user running the tests.
pub fn current_user() -> String {
    let output = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

impl Sshd {
    /// Starts sshd with keys and configuration in `dir`; waits for its banner.
    pub fn start(dir: &Path) -> Sshd {
        assert!(
            Path::new(SSHD).is_file(),
            "{SSHD} is missing: the tunnel tests need openssh-server (run scripts/setup.sh)"
        );
        let ssh = Command::new("ssh").arg("-V").output();
        assert!(ssh.is_ok(), "ssh is missing: the tunnel tests need openssh-client (run scripts/setup.sh)");
        std::fs::create_dir_all("/run/sshd").expect("create sshd's privilege-separation directory /run/sshd");
        let (host_key, client_key) = (dir.join("ssh_host_ed25519_key"), dir.join("client_ed25519_key"));
        keygen(&host_key);
        keygen(&client_key);
        let authorized = dir.join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized).expect("authorized_keys");
        let mut last_log = String::new();
        for _ in 0..3 {
            let port = free_port();
            let config = dir.join(format!("sshd-{port}.conf"));
            let text = format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {host}\nAuthorizedKeysFile {authorized}\n\
                 PidFile {pid}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
                 LogLevel VERBOSE\nPrintMotd no\nAcceptEnv none\n",
                host = host_key.display(),
                authorized = authorized.display(),
                pid = dir.join(format!("sshd-{port}.pid")).display(),
            );
            std::fs::write(&config, text).expect("write sshd_config");
            let log = dir.join(format!("sshd-{port}.log"));
            let file = File::create(&log).expect("sshd log");
            let child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .args(["-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(file.try_clone().expect("log handle"))
                .stderr(file)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"));
            let mut sshd = Sshd { child, port, client_key: client_key.clone(), user: current_user(), log };
            match sshd.wait_banner() {
                Ok(()) => return sshd,
                Err(log) => last_log = log,
            }
        }
        panic!("sshd did not start:\n{last_log}");
    }

    fn wait_banner(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("sshd exited with {status}\n{}", self.log_text()));
            }
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::Read;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut banner = [0u8; 8];
                if stream.read_exact(&mut banner).is_ok() && banner.starts_with(b"SSH-2.0") {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("no SSH banner within 10 s\n{}", self.log_text()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What sshd logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `ssh` reaching `host` through `proxy_command`, running `remote`.
    pub fn ssh(&self, proxy_command: &str, host: &str, remote: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("ssh");
        command
            .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=30"])
            .arg("-o")
            .arg(format!("ProxyCommand={proxy_command}"))
            .arg("-i")
            .arg(&self.client_key)
            .arg(format!("{}@{host}", self.user))
            .arg(remote)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PORTCULLIS_") {
                command.env_remove(name);
            }
        }
        command
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
