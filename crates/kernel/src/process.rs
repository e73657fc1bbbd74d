//! Running a child process with a time bound: stdin written and stdout and
//! stderr drained on their own threads (so no pipe can fill up and stall the
//! child), killed when the bound passes. Used for delegated plugins and for
//! the firewall tools.

use std::io::Write;
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

/// Collects a child's stdout and stderr on one thread until both reach EOF
/// or, once the child has exited (`exited` becomes readable), until they
/// are drained: what the child wrote before exiting is in the pipes by
/// then, and a background process it left behind holding them open (a
/// daemonising IPAM plugin) must not hold the call.
fn collect(
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
    exited: std::os::fd::OwnedFd,
) -> JoinHandle<(Vec<u8>, Vec<u8>)> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    std::thread::spawn(move || {
        let mut bufs = (Vec::new(), Vec::new());
        let mut open = [stdout.is_some(), stderr.is_some()];
        let mut child_gone = false;
        let mut chunk = [0u8; 16 << 10];
        let out_fd = stdout.as_ref().map(|s| s.as_fd());
        let err_fd = stderr.as_ref().map(|s| s.as_fd());
        let read_into = |fd: std::os::fd::BorrowedFd<'_>, buf: &mut Vec<u8>, chunk: &mut [u8]| {
            // false once at EOF or on an error.
            loop {
                match nix::unistd::read(fd, chunk) {
                    Ok(0) => return false,
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        return true;
                    }
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return false,
                }
            }
        };
        while open[0] || open[1] {
            if child_gone {
                // Everything written before the exit, without waiting.
                for (i, fd) in [out_fd, err_fd].into_iter().enumerate() {
                    let (Some(fd), true) = (fd, open[i]) else {
                        continue;
                    };
                    let _ = nix::fcntl::fcntl(
                        fd,
                        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                    );
                    let buf = if i == 0 { &mut bufs.0 } else { &mut bufs.1 };
                    while read_into(fd, buf, &mut chunk) {}
                }
                break;
            }
            let mut fds = Vec::with_capacity(3);
            let mut which = Vec::with_capacity(3);
            for (i, fd) in [out_fd, err_fd].into_iter().enumerate() {
                if let (Some(fd), true) = (fd, open[i]) {
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                    which.push(i);
                }
            }
            fds.push(PollFd::new(exited.as_fd(), PollFlags::POLLIN));
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
                Ok(_) => {}
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            for (k, &i) in which.iter().enumerate() {
                if ready[k] {
                    let fd = if i == 0 { out_fd } else { err_fd };
                    let buf = if i == 0 { &mut bufs.0 } else { &mut bufs.1 };
                    if let Some(fd) = fd {
                        if !read_into(fd, buf, &mut chunk) {
                            open[i] = false;
                        }
                    }
                }
            }
            if ready[ready.len() - 1] {
                child_gone = true;
            }
        }
        bufs
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
    // Written (closed) by the waiter when the child has exited.
    let (exited_r, exited_w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            kill(&mut child);
            return Err(RunError::Wait(format!("cannot make a pipe: {e}")));
        }
    };
    let output = collect(child.stdout.take(), child.stderr.take(), exited_r);
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
        drop(exited_w);
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
    // A child that exited without reading all its input, leaving it to a
    // background process that does not read either, must not hold us.
    if writer.is_finished() {
        let _ = writer.join();
    }
    let (stdout, stderr) = output
        .join()
        .map_err(|_| RunError::Wait("output reader failed".into()))?;
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
    fn a_background_child_holding_stdout_does_not_hold_the_call() {
        // What a daemonising plugin does: answer, exit, and leave a child
        // with the pipes still open.
        let mut c = Command::new("sh");
        c.args(["-c", "sleep 30 & echo '{\"ok\":1}'; echo note >&2; exit 0"]);
        let t = Instant::now();
        let o = run_bounded(c, b"", Duration::from_secs(20)).expect("ran");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert_eq!(o.stdout, b"{\"ok\":1}\n");
        assert_eq!(o.stderr, b"note\n");
        assert!(o.status.success());
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
