//! Test support for the Kotlin, Swift and Python clients of a bindings crate: find the cdylib
//! cargo built for the test, generate a language's sources from it with the workspace's
//! `uniffi-bindgen` (library mode), make a Python package of them, and run programs with a
//! time limit and a check that they exited cleanly.
//!
//! Used by the tests of `bindings/tests/app-bindings` and of each example's bindings crate.
//! Test code: it panics with a message on anything unexpected.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>`: where cargo put the running test and the cdylib.
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// The workspace's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The cdylib `lib<name>.so` cargo built for the running test: next to the test executable in
/// `deps/` (where `cargo test` leaves it), or in `target/<profile>` after a `cargo build`.
pub fn cdylib(name: &str) -> PathBuf {
    let file = format!("lib{name}.so");
    let deps = target_profile_dir().join("deps").join(&file);
    let lib = if deps.exists() {
        deps
    } else {
        target_profile_dir().join(&file)
    };
    assert!(lib.exists(), "cdylib not built: {}", lib.display());
    lib
}

/// Runs `cmd` to completion; panics with its output unless it succeeded.
pub fn run(cmd: &mut Command) -> Output {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !output.status.success() {
        panic!(
            "{cmd:?} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

/// The workspace's `uniffi-bindgen`: `$FLUXON_UNIFFI_BINDGEN` if set, else built here (it is
/// its own cargo workspace, built in its own target directory so this nested cargo never waits
/// on the outer one's lock).
pub fn bindgen() -> PathBuf {
    if let Ok(path) = std::env::var("FLUXON_UNIFFI_BINDGEN") {
        return PathBuf::from(path);
    }
    let target = target_profile_dir()
        .parent()
        .expect("target dir")
        .join("uniffi-bindgen");
    let manifest = repo_root().join("bindings/uniffi-bindgen/Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo)
        .args(["build", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target));
    target.join("debug/uniffi-bindgen")
}

/// Generates `language` sources for the cdylib `lib` into `out` (library mode).
pub fn generate(lib: &Path, language: &str, out: &Path) -> PathBuf {
    // uniffi-bindgen runs `cargo metadata` to find the crates of the library: run it in the
    // workspace.
    run(Command::new(bindgen())
        .current_dir(repo_root())
        .arg("generate")
        .arg(lib)
        .args(["--language", language, "--no-format", "--out-dir"])
        .arg(out));
    out.to_path_buf()
}

/// A temp dir holding the Python package `package`: the generated modules import each other
/// relatively (`from . import fluxon`), so they and the library form a package.
pub fn python_package(lib: &Path, package: &str) -> tempfile::TempDir {
    let work = tempfile::tempdir().expect("temp dir");
    let generated = generate(lib, "python", &work.path().join(package));
    std::fs::write(generated.join("__init__.py"), "").expect("write __init__.py");
    let name = lib.file_name().expect("library file name");
    std::fs::copy(lib, generated.join(name)).expect("copy cdylib");
    work
}

/// Runs `cmd`, killing it if it has not exited within `limit` (a hang at exit is a failure too).
/// Its output is read while it runs, so a chatty program never blocks on a full pipe.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let started = Instant::now();
    let mut status = child.try_wait().expect("wait for child");
    while status.is_none() && started.elapsed() <= limit {
        std::thread::sleep(Duration::from_millis(20));
        status = child.try_wait().expect("wait for child");
    }
    let timed_out = status.is_none();
    if timed_out {
        let _ = child.kill();
    }
    let output = Output {
        status: child.wait().expect("wait for child"),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    if timed_out {
        panic!(
            "{cmd:?} still running after {limit:?}\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

/// How a process left that should have exited cleanly: `None` if it did (status 0, no abort or
/// crash reported on stderr), else what went wrong.
pub fn unclean_exit(output: &Output) -> Option<String> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let crashed = [
        "FATAL",
        "Segmentation",
        "panicked",
        "Fatal Python error",
        "Aborted",
    ]
    .iter()
    .any(|needle| stderr.contains(needle));
    (!output.status.success() || crashed).then(|| format!("{}; stderr:\n{stderr}", output.status))
}

/// How many times the exit-with-work-in-flight programs run (`FLUXON_EXIT_RUNS`, default 5):
/// the failure they guard against is a race with the library's runtime threads.
pub fn exit_runs() -> usize {
    std::env::var("FLUXON_EXIT_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5)
}

/// What the exit-with-work-in-flight programs print just before they leave.
pub const LEAVING: &str = "leaving with the upload in flight";

/// Runs `program(run)` for each run of [`exit_runs`]: every run must print [`LEAVING`] and
/// then exit cleanly ([`unclean_exit`]). Panics naming the runs that did not.
pub fn assert_clean_exits(language: &str, mut program: impl FnMut(usize) -> Output) {
    let runs = exit_runs();
    let mut failures = Vec::new();
    for run in 1..=runs {
        let output = program(run);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        match unclean_exit(&output) {
            None if stdout.contains(LEAVING) => println!(
                "{language} run {run}/{runs}: clean exit{}",
                match stderr.trim() {
                    "" => String::new(),
                    stderr => format!(", stderr:\n{stderr}"),
                }
            ),
            None => failures.push(format!(
                "run {run}: did not reach the exit\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
            )),
            Some(why) => {
                println!("{language} run {run}/{runs}: {why}--- stdout\n{stdout}");
                failures.push(format!("run {run}: {why}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{language}: {} of {runs} runs did not exit cleanly:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every file below `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)
        .expect("read generated dir")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The Kotlin/JVM toolchain that `bindings/scripts/test-kotlin.sh` installs and names in
/// `FLUXON_KOTLIN_HOME` (and `FLUXON_JNA_JAR`, default Debian's `/usr/share/java/jna.jar`).
#[derive(Debug)]
pub struct Kotlin {
    home: PathBuf,
    jna: String,
}

/// Kotlin programs compiled with a library's generated sources, ready to run.
#[derive(Debug)]
pub struct KotlinBuild {
    /// Holds the library (`jna.library.path`) and the classes.
    pub work: tempfile::TempDir,
    classpath: String,
}

impl Kotlin {
    /// The toolchain named by the environment; panics saying how to get it when unset.
    pub fn from_env() -> Self {
        let home = std::env::var("FLUXON_KOTLIN_HOME")
            .expect("FLUXON_KOTLIN_HOME is not set: run bindings/scripts/test-kotlin.sh");
        Self {
            home: PathBuf::from(home),
            jna: std::env::var("FLUXON_JNA_JAR")
                .unwrap_or_else(|_| "/usr/share/java/jna.jar".into()),
        }
    }

    /// Generates the Kotlin sources of `lib` and compiles them with `programs`.
    pub fn build(&self, lib: &Path, programs: &[PathBuf]) -> KotlinBuild {
        let work = tempfile::tempdir().expect("temp dir");
        let generated = generate(lib, "kotlin", &work.path().join("src"));
        let name = lib.file_name().expect("library file name");
        std::fs::copy(lib, work.path().join(name)).expect("copy cdylib");
        let mut sources: Vec<PathBuf> = walk(&generated)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "kt"))
            .collect();
        sources.extend_from_slice(programs);
        let lib_dir = self.home.join("lib");
        let coroutines = lib_dir.join("kotlinx-coroutines-core-jvm.jar");
        let stdlib = lib_dir.join("kotlin-stdlib.jar");
        let classes = work.path().join("classes");
        let compile_classpath = format!("{}:{}", self.jna, coroutines.display());
        run(Command::new(self.home.join("bin/kotlinc"))
            .args(&sources)
            .args(["-nowarn", "-cp", &compile_classpath, "-d"])
            .arg(&classes));
        let classpath = format!(
            "{}:{}:{}:{}",
            classes.display(),
            self.jna,
            coroutines.display(),
            stdlib.display()
        );
        KotlinBuild { work, classpath }
    }
}

impl KotlinBuild {
    /// `java` running `main_class` with the library and the classes.
    pub fn java(&self, main_class: &str) -> Command {
        let mut cmd = Command::new("java");
        cmd.arg(format!("-Djna.library.path={}", self.work.path().display()))
            .args(["-cp", &self.classpath, main_class]);
        cmd
    }
}
