//! A private server process (redis-server, etcd), restartable on the same
//! ports and data directory; killed, and its directory removed, on drop.

use std::path::PathBuf;
use std::process::{Child, Command};

/// A server program run by a test.
pub struct Server {
    program: String,
    args: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Server {
    /// `program` with `args`, logging into (and owning) `dir`; not started.
    pub fn new(program: &str, dir: PathBuf, args: Vec<String>) -> Server {
        std::fs::create_dir_all(&dir).unwrap();
        Server {
            program: program.to_owned(),
            args,
            dir,
            child: None,
            starts: 0,
        }
    }

    /// Starts it (again), with a new log file per start.
    pub fn start(&mut self) {
        self.starts += 1;
        let log =
            std::fs::File::create(self.dir.join(format!("server-{}.log", self.starts))).unwrap();
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program));
        self.child = Some(child);
    }

    /// SIGKILLs it and reaps it (nothing when it is not running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
