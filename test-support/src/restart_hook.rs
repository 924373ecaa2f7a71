//! A CRI "restart" that a test carries out itself: [`RestartHook::command`] is a
//! `--restart-command` for the installer (a shell line that asks through a FIFO and exits with
//! the test's answer), and the closure given to [`RestartHook::start`] runs in the test's
//! process for each request — e.g. stop the private containerd and start a new one on the
//! config the installer wrote. This machine has no systemd; this is what stands in for
//! `systemctl restart containerd`, with the same contract: exit 0 once the service is started
//! again, non-zero when it did not start.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result};

const STOP: &str = "\u{1}stop";

pub struct RestartHook {
    _dir: tempfile::TempDir,
    request: PathBuf,
    ack: PathBuf,
    seen: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl RestartHook {
    /// Serves restart requests with `on_restart(unit)` until dropped.
    pub fn start<F>(mut on_restart: F) -> Result<Self>
    where
        F: FnMut(&str) -> Result<()> + Send + 'static,
    {
        let dir = tempfile::Builder::new()
            .prefix("restart-hook-")
            .tempdir()
            .context("creating the hook's directory")?;
        let request = dir.path().join("request");
        let ack = dir.path().join("ack");
        for fifo in [&request, &ack] {
            nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .with_context(|| format!("mkfifo {}", fifo.display()))?;
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (req, ack_path, seen2) = (request.clone(), ack.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            loop {
                let mut text = String::new();
                if std::fs::File::open(&req)
                    .and_then(|mut f| f.read_to_string(&mut text))
                    .is_err()
                {
                    return;
                }
                let unit = text.trim().to_owned();
                if unit == STOP {
                    return;
                }
                let outcome = on_restart(&unit);
                if let Err(e) = &outcome {
                    eprintln!("restart hook: restarting {unit} failed: {e:#}");
                }
                if let Ok(mut seen) = seen2.lock() {
                    seen.push(unit);
                }
                let code = if outcome.is_ok() { "0\n" } else { "1\n" };
                if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&ack_path) {
                    let _ = f.write_all(code.as_bytes());
                }
            }
        });
        Ok(Self {
            _dir: dir,
            request,
            ack,
            seen,
            thread: Some(thread),
        })
    }

    /// The `--restart-command` that asks this hook (`{unit}` is filled in by the installer).
    pub fn command(&self) -> String {
        format!(
            "/bin/sh -c 'echo \"$1\" > \"$2\" && read -r rc < \"$3\" && exit \"$rc\"' hook {{unit}} {} {}",
            quote(&self.request),
            quote(&self.ack)
        )
    }

    /// The units restarted so far, in order.
    pub fn restarts(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

impl Drop for RestartHook {
    fn drop(&mut self) {
        use std::os::unix::fs::OpenOptionsExt;
        let Some(thread) = self.thread.take() else {
            return;
        };
        // Non-blocking: with no reader (the thread is between requests) open fails with ENXIO,
        // and it is tried again until the thread reads or has ended.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
                .open(&self.request)
            {
                let _ = f.write_all(STOP.as_bytes());
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if thread.is_finished() || std::time::Instant::now() < deadline {
            let _ = thread.join();
        }
    }
}
