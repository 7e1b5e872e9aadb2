//! The shipped binary as users run it: `seedgate serve` in a process of its own, with the
//! default logging (written to `server.log` in its data dir, as a service manager would keep
//! it), measured from outside. The soak and the API bench start it this way.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fake_ark::{FAKE_KEY, FAKE_KEY_ENV};

/// A `seedgate serve` process, killed when dropped.
pub struct Served {
    child: Child,
    /// `http://127.0.0.1:<port>`, the port the server chose.
    pub address: String,
    pub database_url: String,
    pub data_dir: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Starts the server on `database_url` with `config` (TOML) as its configuration file,
    /// and returns once it listens. The fake upstream's key is in its environment, for
    /// configurations whose channels name it.
    pub fn start(data_dir: &Path, database_url: &str, config: &str) -> Self {
        std::fs::create_dir_all(data_dir).unwrap();
        let config_file = data_dir.join("seedgate.toml");
        std::fs::write(&config_file, config).unwrap();
        let log = data_dir.join("server.log");
        let child = Command::new(env!("CARGO_BIN_EXE_seedgate"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .arg("--config")
            .arg(&config_file)
            .env("SEEDGATE_DATABASE_URL", database_url)
            .env(FAKE_KEY_ENV, FAKE_KEY)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the seedgate binary");
        let mut served = Served {
            child,
            address: String::new(),
            database_url: database_url.to_owned(),
            data_dir: data_dir.to_owned(),
        };
        let started = Instant::now();
        served.address = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let bound = text
                .lines()
                .filter(|line| line.contains("seedgate listening"))
                .find_map(|line| {
                    line.split_whitespace()
                        .find_map(|field| field.strip_prefix("addr="))
                });
            if let Some(address) = bound {
                break format!("http://{address}");
            }
            assert!(
                matches!(served.child.try_wait(), Ok(None)),
                "the server exited: {text}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the server did not listen within two minutes: {text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        served
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn resident_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    pub fn open_descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, Iterator::count)
    }
}
