//! `--allow-connect HOST:PORT`: one TCP endpoint carried into a sandbox.
//!
//! A sandboxed worker has its own, empty network namespace. Sharing the
//! host's network and filtering it would leave every local service (and
//! every abstract Unix socket) one mistake away; instead nothing is shared
//! and each allowed endpoint is relayed through a Unix socket:
//!
//! ```text
//!  worker ──TCP──> distex __relay ──Unix──> distex __sandbox ──TCP──> HOST:PORT
//!          (inside: loopback addr:PORT)  (socket in the worker's dir) (outside)
//! ```
//!
//! * [`outside`]: in `distex __sandbox`, before bwrap starts: one listening
//!   Unix socket per endpoint in `.distex-connect/` of the worker's
//!   directory, each accepted stream connected to HOST:PORT (resolved and
//!   connected outside, where the network is), plus the sandbox's
//!   `/etc/hosts`.
//! * [`main`] (`distex __relay --listen ADDR SOCKET ... -- PROGRAM ARGS`):
//!   inside the sandbox, listens on ADDR:PORT of the sandbox's loopback and
//!   carries each connection to its socket, then runs the worker and exits
//!   with its status.
//!
//! The worker can reach HOST:PORT and nothing else: the only way out of
//! its namespace is the socket, and what is on the other side of the
//! socket only ever connects to that one endpoint.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// One `--allow-connect HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// A host name or an IP address (without brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Endpoint {
    /// Parses `HOST:PORT` or `[IPV6]:PORT`.
    pub(crate) fn parse(text: &str) -> Result<Endpoint, String> {
        let bad = |why: &str| {
            format!("--allow-connect {text:?}: {why}; expected HOST:PORT, e.g. 127.0.0.1:8080 or api.example.com:443")
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port: u16 =
            port.parse().ok().filter(|p| *p > 0).ok_or_else(|| bad("the port is not a number from 1 to 65535"))?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        // Also keeps it one plain word in the node script (see `node`).
        if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')) {
            return Err(bad("the host is empty or not a host name"));
        }
        if let Ok(ip) = host.parse::<IpAddr>()
            && !ip.is_loopback()
        {
            return Err(bad(
                "an IP address outside the loopback range cannot be given its own address in the sandbox; \
                 name the host by its DNS name instead",
            ));
        }
        Ok(Endpoint { host: host.to_string(), port })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One relayed endpoint, as set up outside the sandbox.
pub(crate) struct Outside {
    /// Where the worker connects inside the sandbox.
    pub(crate) inside: SocketAddr,
    /// The Unix socket `distex __relay` forwards to.
    pub(crate) socket: PathBuf,
    /// The sandbox's `/etc/hosts` (the same file for every endpoint).
    pub(crate) hosts_file: PathBuf,
}

/// Sets up every endpoint's Unix socket and relay in `dir/.distex-connect`;
/// [`Relays::finish`] them once the sandbox has ended.
pub(crate) fn outside(dir: &Path, endpoints: &[Endpoint]) -> Result<(Vec<Outside>, Relays), String> {
    let mut running = Relays::default();
    if endpoints.is_empty() {
        return Ok((Vec::new(), running));
    }
    let sockets = dir.join(".distex-connect");
    std::fs::create_dir_all(&sockets).map_err(|e| format!("cannot create {}: {e}", sockets.display()))?;
    let hosts_file = sockets.join("hosts");
    let mut hosts = String::from("127.0.0.1 localhost\n::1 localhost\n");
    let mut relays = Vec::new();
    for (i, endpoint) in endpoints.iter().enumerate() {
        let ip = match endpoint.host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) if endpoint.host == "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            // A name of its own: a loopback address of its own in the sandbox.
            Err(_) => {
                let ip = Ipv4Addr::new(127, 77, (i / 250) as u8, (i % 250 + 1) as u8);
                hosts.push_str(&format!("{ip} {}\n", endpoint.host));
                IpAddr::V4(ip)
            }
        };
        let socket = sockets.join(format!("{i}.sock"));
        let listener =
            UnixListener::bind(&socket).map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
        let target = endpoint.clone();
        running.serve(listener, move || TcpStream::connect((target.host.as_str(), target.port)));
        relays.push(Outside { inside: SocketAddr::new(ip, endpoint.port), socket, hosts_file: hosts_file.clone() });
    }
    std::fs::write(&hosts_file, hosts).map_err(|e| format!("cannot write {}: {e}", hosts_file.display()))?;
    Ok((relays, running))
}

/// Entry point of `distex __relay --listen ADDR SOCKET ... -- PROGRAM ARGS`
/// (inside the sandbox).
pub(crate) fn main(args: &[OsString]) -> u8 {
    let mut rest = args;
    let mut listening = Vec::new();
    loop {
        match rest {
            [flag, addr, socket, tail @ ..] if flag == "--listen" => {
                let Ok(addr) = addr.to_string_lossy().parse::<SocketAddr>() else {
                    eprintln!("distex __relay: bad address {addr:?}");
                    return 2;
                };
                match TcpListener::bind(addr) {
                    Ok(l) => listening.push((l, PathBuf::from(socket))),
                    Err(e) => {
                        eprintln!("distex: sandbox: cannot listen on {addr} inside the sandbox: {e}");
                        return super::sandbox::SETUP_FAILED;
                    }
                }
                rest = tail;
            }
            [dashes, tail @ ..] if dashes == "--" => rest = tail,
            _ => break,
        }
    }
    let Some((program, program_args)) = rest.split_first() else {
        eprintln!("distex __relay: expected a program to run");
        return 2;
    };
    let mut running = Relays::default();
    for (listener, socket) in listening {
        running.serve(listener, move || UnixStream::connect(&socket));
    }
    let status = match std::process::Command::new(program).args(program_args).status() {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            status.code().map_or_else(|| 128 + status.signal().unwrap_or(0) as u8, |c| c as u8)
        }
        Err(e) => {
            eprintln!("distex: sandbox: cannot run {}: {e}", program.to_string_lossy());
            127
        }
    };
    running.finish();
    status
}

/// The relay loops of one process and the connections they carry, so that
/// the process ends only after what the worker sent has been passed on.
#[derive(Default)]
pub(crate) struct Relays {
    stop: Arc<AtomicBool>,
    loops: Vec<std::thread::JoinHandle<()>>,
    upstream: InFlight,
}

impl Relays {
    /// Accepts on `listener` (polling, so that [`Relays::finish`] can stop
    /// it after taking what is already queued) and splices each stream to
    /// a new `connect()`.
    fn serve<L: Accept, D: Duplex>(
        &mut self,
        listener: L,
        connect: impl Fn() -> std::io::Result<D> + Send + Sync + 'static,
    ) {
        let (stop, upstream, connect) = (self.stop.clone(), self.upstream.clone(), Arc::new(connect));
        self.loops.push(std::thread::spawn(move || {
            let _ = listener.nonblocking();
            loop {
                match listener.accept_stream() {
                    Ok(stream) => {
                        let (carrying, connect) = (upstream.start(), connect.clone());
                        std::thread::spawn(move || {
                            if let Ok(out) = connect() {
                                splice(stream, out, carrying);
                            }
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && stop.load(Ordering::SeqCst) => break,
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }));
    }

    /// Once the worker has ended: takes the connections still queued, and
    /// waits (at most [`FINISH_LIMIT`]) until every byte the worker sent
    /// has been passed on.
    pub(crate) fn finish(self) {
        self.stop.store(true, Ordering::SeqCst);
        for handle in self.loops {
            let _ = handle.join();
        }
        self.upstream.wait(FINISH_LIMIT);
    }
}

/// How long a relay waits, after its worker ended, for what the worker
/// sent to be passed on.
const FINISH_LIMIT: Duration = Duration::from_secs(5);

/// How many connections still have worker bytes to pass on.
#[derive(Clone, Default)]
struct InFlight(Arc<(Mutex<usize>, Condvar)>);

/// One connection's upstream direction, counted while it lasts.
struct Carrying(InFlight);

impl InFlight {
    fn start(&self) -> Carrying {
        *self.0.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        Carrying(self.clone())
    }

    fn wait(&self, limit: Duration) {
        let (count, changed) = &*self.0;
        let guard = count.lock().unwrap_or_else(|e| e.into_inner());
        let _ = changed.wait_timeout_while(guard, limit, |n| *n > 0);
    }
}

impl Drop for Carrying {
    fn drop(&mut self) {
        let (count, changed) = &*self.0.0;
        *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        changed.notify_all();
    }
}

/// A listening socket whose accepted streams can be spliced.
trait Accept: Send + 'static {
    type Stream: Duplex;
    fn accept_stream(&self) -> std::io::Result<Self::Stream>;
    fn nonblocking(&self) -> std::io::Result<()>;
}

impl Accept for TcpListener {
    type Stream = TcpStream;
    fn accept_stream(&self) -> std::io::Result<TcpStream> {
        let (stream, _) = self.accept()?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    }
    fn nonblocking(&self) -> std::io::Result<()> {
        self.set_nonblocking(true)
    }
}

impl Accept for UnixListener {
    type Stream = UnixStream;
    fn accept_stream(&self) -> std::io::Result<UnixStream> {
        let (stream, _) = self.accept()?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    }
    fn nonblocking(&self) -> std::io::Result<()> {
        self.set_nonblocking(true)
    }
}

/// A byte stream that can be split into a reading and a writing half.
trait Duplex: Read + Write + Send + Sized + 'static {
    fn duplicate(&self) -> std::io::Result<Self>;
    fn close_write(&self);
}

impl Duplex for TcpStream {
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn close_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

impl Duplex for UnixStream {
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn close_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

/// Copies bytes both ways until each side has said all it has to say;
/// `carrying` counts the upstream direction (`a`, the worker's side, to
/// `b`) until it is done.
fn splice(a: impl Duplex, b: impl Duplex, carrying: Carrying) {
    let (Ok(mut a_read), Ok(mut b_read)) = (a.duplicate(), b.duplicate()) else { return };
    let (mut a_write, mut b_write) = (a, b);
    let upstream = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a_read, &mut b_write);
        b_write.close_write();
        drop(carrying);
    });
    let _ = std::io::copy(&mut b_read, &mut a_write);
    a_write.close_write();
    let _ = upstream.join();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_host_and_port() {
        let e = Endpoint::parse("api.example.com:443").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("api.example.com", 443));
        assert_eq!(Endpoint::parse("[::1]:8080").unwrap().to_string(), "[::1]:8080");
        assert_eq!(Endpoint::parse("127.0.0.1:9").unwrap().to_string(), "127.0.0.1:9");
    }

    #[test]
    fn bad_endpoints_say_what_is_expected() {
        for (text, why) in [
            ("example.com", "no port"),
            ("example.com:0", "1 to 65535"),
            ("example.com:http", "1 to 65535"),
            (":80", "not a host name"),
            ("a b:80", "not a host name"),
            ("$(x):80", "not a host name"),
            ("10.0.0.1:80", "DNS name"),
        ] {
            let err = Endpoint::parse(text).unwrap_err();
            assert!(err.contains(why) && err.contains("HOST:PORT"), "{text}: {err}");
        }
    }
}
