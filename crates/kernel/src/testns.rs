//! Throwaway network namespaces for the privileged unit tests of the
//! firewall layers: run a tool inside one, or a closure on a thread in it.

use std::io::Write;
use std::process::{Command, Stdio};

/// A named netns, deleted on drop.
pub struct Ns(pub String);

impl Ns {
    pub fn new(tag: &str) -> Ns {
        let name = format!("wcni-{tag}-{}", std::process::id());
        let ok = Command::new("ip").args(["netns", "add", &name]).status();
        assert!(ok.is_ok_and(|s| s.success()), "ip netns add {name}");
        Ns(name)
    }

    /// `prog args <stdin` inside the namespace; its stdout. Panics on failure.
    pub fn run(&self, prog: &str, args: &[&str], stdin: &str) -> String {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, prog])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{prog} {args:?} <<{stdin}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `f` on a thread inside the namespace (threads and processes it
    /// starts are in there too).
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::scope(|s| {
            s.spawn(|| {
                let fd = std::fs::File::open(&path).expect("open netns");
                nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .join()
            .expect("thread")
        })
    }

    /// The `-A` lines of `iptables-save -t nat` (or ip6tables-save).
    pub fn nat_rules(&self, v6: bool) -> Vec<String> {
        let save = if v6 {
            "ip6tables-save"
        } else {
            "iptables-save"
        };
        self.run(save, &["-t", "nat"], "")
            .lines()
            .filter(|l| l.starts_with("-A ") || l.starts_with(':'))
            .map(|l| l.split(" [").next().unwrap_or(l).to_string())
            .collect()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
