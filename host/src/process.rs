//! Running a child process with a time bound: stdin written and stdout and
//! stderr drained on their own threads (so no pipe can fill up and stall the
//! child), killed when the bound passes. Used for delegated plugins and for
//! the firewall tools.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

/// What a finished child left.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

#[derive(Debug)]
pub enum RunError {
    /// It could not be started (not installed, not executable).
    Spawn(std::io::Error),
    /// It did not finish within the bound and was killed.
    Timeout,
    /// Waiting for it failed.
    Wait(String),
}

fn drain(mut r: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(r) = r.as_mut() {
            let _ = r.read_to_end(&mut buf);
        }
        buf
    })
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `cmd` with `stdin` as its input, for at most `timeout`.
pub fn run_bounded(mut cmd: Command, stdin: &[u8], timeout: Duration) -> Result<Output, RunError> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(RunError::Spawn)?;
    let input = stdin.to_vec();
    let mut si = child.stdin.take();
    let writer = std::thread::spawn(move || {
        // A child that exits without reading its input closes the pipe: not an error here.
        if let Some(s) = si.as_mut() {
            let _ = s.write_all(&input);
        }
    });
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    // Waiting blocks (no polling delay added to every exec): a thread
    // sleeps until the child exits, without reaping it, so that on timeout
    // the child can still be killed by its pid without any chance of reuse.
    let (exited_tx, exited) = std::sync::mpsc::channel();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    std::thread::spawn(move || {
        use nix::sys::wait::{waitid, Id, WaitPidFlag};
        let r = loop {
            match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                // A handled signal is not the child exiting: wait on.
                Err(nix::errno::Errno::EINTR) => continue,
                r => break r,
            }
        };
        let _ = exited_tx.send(r.map(drop).map_err(|e| e.to_string()));
    });
    let status = match exited.recv_timeout(timeout) {
        Ok(Ok(())) => child.wait().map_err(|e| RunError::Wait(e.to_string())),
        Ok(Err(e)) => Err(RunError::Wait(e)),
        Err(_) => Err(RunError::Timeout),
    };
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            kill(&mut child);
            return Err(e);
        }
    };
    let _ = writer.join();
    let stdout = out
        .join()
        .map_err(|_| RunError::Wait("stdout reader failed".into()))?;
    let stderr = err
        .join()
        .map_err(|_| RunError::Wait("stderr reader failed".into()))?;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn passes_stdin_and_collects_both_streams() {
        let mut c = Command::new("sh");
        c.args(["-c", "cat; echo oops >&2; exit 3"]);
        let o = run_bounded(c, b"hello", Duration::from_secs(5)).expect("ran");
        assert_eq!(o.stdout, b"hello");
        assert_eq!(o.stderr, b"oops\n");
        assert_eq!(o.status.code(), Some(3));
    }

    #[test]
    fn a_chatty_stderr_does_not_stall_the_child() {
        let mut c = Command::new("sh");
        c.args(["-c", "head -c 1000000 /dev/zero >&2; echo done"]);
        let o = run_bounded(c, b"", Duration::from_secs(5)).expect("ran");
        assert_eq!(o.stdout, b"done\n");
        assert_eq!(o.stderr.len(), 1_000_000);
    }

    #[test]
    fn a_hung_child_is_killed_at_the_bound() {
        let mut c = Command::new("sleep");
        c.arg("30");
        let t = Instant::now();
        assert!(matches!(
            run_bounded(c, b"", Duration::from_millis(200)),
            Err(RunError::Timeout)
        ));
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        assert!(matches!(
            run_bounded(
                Command::new("/nonexistent/tool"),
                b"",
                Duration::from_secs(1)
            ),
            Err(RunError::Spawn(_))
        ));
    }
}
