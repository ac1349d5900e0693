//! Reading a passphrase from the terminal with echo turned off.
//!
//! The prompt goes to, and the answer comes from, `/dev/tty`, so it works
//! when stdin or stdout are redirected and never mixes with program output.
//! The answer is kept in zeroized memory only.

use crate::secret::Secret;

/// Why no passphrase could be read.
#[derive(Debug)]
#[cfg_attr(not(unix), allow(dead_code))]
pub enum PromptError {
    /// There is no terminal to ask on.
    NoTerminal,
    /// The user typed nothing.
    Empty,
    /// Reading failed.
    Io(std::io::Error),
}

/// The longest passphrase accepted at the prompt, in bytes.
pub const MAX_LEN: usize = 1024;

/// Prints `prompt` on the terminal and reads one line without echo.
#[cfg(unix)]
pub fn read_hidden(prompt: &str) -> Result<Secret, PromptError> {
    use std::fs::OpenOptions;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    use zeroize::Zeroizing;

    let mut tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| PromptError::NoTerminal)?;
    let fd = tty.as_raw_fd();
    // SAFETY: termios is plain old data; tcgetattr fills it or fails.
    let mut old: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is an open descriptor owned by `tty` for this whole function.
    if unsafe { libc::tcgetattr(fd, &mut old) } != 0 {
        return Err(PromptError::NoTerminal);
    }
    let mut quiet = old;
    quiet.c_lflag &= !(libc::ECHO | libc::ECHONL);
    quiet.c_lflag |= libc::ICANON;
    tty.write_all(prompt.as_bytes()).map_err(PromptError::Io)?;
    tty.flush().map_err(PromptError::Io)?;
    // SAFETY: as above; `quiet` is a valid termios derived from the current one.
    if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
        return Err(PromptError::Io(std::io::Error::last_os_error()));
    }
    // Allocated once and never grown, so no copy of the answer is left in
    // freed memory.
    let mut line = Zeroizing::new(Vec::with_capacity(MAX_LEN));
    let mut byte = [0u8; 1];
    let result = loop {
        match tty.read(&mut byte) {
            Ok(0) => break Ok(()),
            Ok(_) if byte[0] == b'\n' => break Ok(()),
            Ok(_) if line.len() == MAX_LEN => {
                break Err(PromptError::Io(std::io::Error::other(
                    "the passphrase is longer than 1024 bytes",
                )));
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(PromptError::Io(e)),
        }
    };
    zeroize::Zeroize::zeroize(&mut byte);
    // SAFETY: restores the settings read above on the same descriptor.
    unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &old) };
    let _ = tty.write_all(b"\n");
    result?;
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if line.is_empty() {
        return Err(PromptError::Empty);
    }
    Secret::from_utf8(std::mem::take(&mut *line))
        .map_err(|_| PromptError::Io(std::io::Error::other("the passphrase is not valid UTF-8")))
}

/// Writes a short message to the terminal, if there is one.
pub fn notice(msg: &str) {
    use std::io::Write;
    if let Ok(mut tty) = std::fs::OpenOptions::new().write(true).open("/dev/tty") {
        let _ = tty.write_all(msg.as_bytes());
    }
}

/// No terminal prompt on this platform.
#[cfg(not(unix))]
pub fn read_hidden(_prompt: &str) -> Result<Secret, PromptError> {
    Err(PromptError::NoTerminal)
}
