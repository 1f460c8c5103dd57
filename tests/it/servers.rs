//! Real servers for the object-store tests, started on free 127.0.0.1 ports: moto's S3 server
//! (PyPI `moto[server]`), Azurite (npm) and Python's static HTTP server, from the tools the
//! harness provisions (`tools`). A server that cannot start fails its test, unless the run opts
//! out with `CUSTOMER_VALUE_ALLOW_SKIP=1`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        // A stopped (SIGSTOP) server must be continued before it can die.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    /// Freezes the server (it accepts connections but never answers): a store that is down.
    pub fn stop(&self) {
        Command::new("kill")
            .args(["-STOP", &self.pid().to_string()])
            .status()
            .unwrap();
    }
    pub fn resume(&self) {
        Command::new("kill")
            .args(["-CONT", &self.pid().to_string()])
            .status()
            .unwrap();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn unavailable(what: &str, why: &str) -> Option<Server> {
    crate::tools::unavailable(what, why)
}

fn spawn(program: &PathBuf, args: &[String], port: u16, what: &str) -> Option<Server> {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(program)
        .args(args)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => return unavailable(what, &format!("{}: {e}", program.display())),
    };
    let server = Server {
        child,
        port,
        _dir: dir,
    };
    if !wait_port(port, Duration::from_secs(30)) {
        return unavailable(what, "did not open its port within 30 s");
    }
    Some(server)
}

pub fn moto() -> Option<Server> {
    let bin = crate::tools::python()?.parent()?.join("moto_server");
    let port = free_port();
    spawn(
        &bin,
        &[
            "-H".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ],
        port,
        "moto S3 server",
    )
}

pub fn azurite() -> Option<Server> {
    let bin = crate::tools::azurite()?;
    let port = free_port();
    spawn(
        &bin,
        &[
            "--blobHost".into(),
            "127.0.0.1".into(),
            "--blobPort".into(),
            port.to_string(),
            // Relative: inside the server's own temporary folder (its working directory),
            // which is removed with the server.
            "--location".into(),
            "azurite".into(),
            "--skipApiVersionCheck".into(),
            "--loose".into(),
            // No telemetry: the only network here is loopback.
            "--disableTelemetry".into(),
            "--silent".into(),
        ],
        port,
        "Azurite",
    )
}

pub fn http_static(dir: &std::path::Path) -> Option<Server> {
    let python = crate::tools::python()?;
    let port = free_port();
    spawn(
        &python,
        &[
            "-m".into(),
            "http.server".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--directory".into(),
            dir.display().to_string(),
        ],
        port,
        "python http.server",
    )
}

/// Creates an S3 bucket on moto with a plain (unsigned) PUT.
pub fn create_bucket(server: &Server, bucket: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        server.port
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "create bucket: {resp}");
}

/// Azurite's well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Creates a blob container on Azurite (with the Python SDK from the test venv).
pub fn create_container(server: &Server, container: &str) {
    let python = crate::tools::python().expect("Azurite runs, so the venv exists");
    let cs = format!(
        "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={}/{AZURITE_ACCOUNT};",
        server.endpoint()
    );
    let out = Command::new(python)
        .args([
            "-c",
            "import sys; from azure.storage.blob import BlobServiceClient as C; C.from_connection_string(sys.argv[1]).create_container(sys.argv[2])",
            &cs,
            container,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "create container: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
