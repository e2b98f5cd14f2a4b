//! The official Python SDKs (`openai`, `anthropic`) in a virtualenv created by the test set-up
//! on first use (under the target directory, shared by later runs), and a helper to run a
//! script with them.

use std::path::PathBuf;
use std::process::Command;

fn venv_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            // …/target/debug/deps/e2e-xxxx → …/target
            let exe = std::env::current_exe().unwrap();
            exe.ancestors()
                .nth(3)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("target"))
        });
    target.join("pyenv-sdk")
}

/// The virtualenv's python, with the SDKs installed (created once, under a file lock).
pub fn python() -> PathBuf {
    let dir = venv_dir();
    let py = dir.join("bin/python");
    let marker = dir.join(".sdks-installed");
    if marker.exists() {
        return py;
    }
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.with_extension("lock"))
        .unwrap();
    lock.lock().unwrap();
    if !marker.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "python3 -m venv failed (is python3 installed?)");
        let ok = Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "openai>=1.40,<3",
                "anthropic>=0.34,<1",
            ])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "pip install openai anthropic failed (needs access to PyPI)"
        );
        std::fs::write(&marker, b"ok").unwrap();
    }
    let _ = lock.unlock();
    py
}

/// Runs a Python script with the SDKs; returns (success, stdout, stderr). Async, so fake
/// upstreams on the test's runtime keep serving while the script runs.
pub async fn run(script: &str, env: &[(&str, String)]) -> (bool, String, String) {
    let py = tokio::task::spawn_blocking(python).await.unwrap();
    let out = tokio::process::Command::new(py)
        .arg("-c")
        .arg(script)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
