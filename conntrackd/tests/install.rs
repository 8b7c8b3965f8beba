//! contrib/install.sh against artifacts made by `cargo xtask dist` (packaging
//! the debug binary, so no release build runs in the tests), served by a
//! small HTTP server on 127.0.0.1, into temporary roots (DESTDIR): a fresh
//! install, a re-run, `--from`, a checksum mismatch, `--with-geoip` from a
//! local file, `--uninstall`, the root check, and shellcheck.
#[path = "common/mmdb.rs"]
mod mmdb;

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/install.sh");
const CONTRIB_CONFIG: &str = include_str!("../../contrib/conntrackd.toml");
const INSTALLED: [&str; 4] =
    ["usr/local/bin/conntrackd", "etc/systemd/system/conntrackd.service", "usr/local/share/man/man1/conntrackd.1", "usr/local/share/man/man1/conntrackd-run.1"];

/// A directory under the target dir, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("install-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// `cargo xtask dist --binary <debug binary> --out DIR`, once per test run.
fn artifacts() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // One directory, replaced by every run (a per-run name would pile up stripped binaries).
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("install-dist");
        let _ = std::fs::remove_dir_all(&out);
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["run", "--quiet", "--package", "xtask", "--", "dist", "--binary", env!("CARGO_BIN_EXE_conntrackd"), "--out"])
            .arg(&out)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .expect("run cargo xtask dist");
        assert!(status.success(), "cargo xtask dist --binary failed: {status}");
        out
    })
}

/// Serves the files of `dir` over HTTP/1.0 on 127.0.0.1 (random port) from a thread; returns the base URL.
fn serve(dir: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = String::new();
            let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            // Headers up to the blank line.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let target = request.split_whitespace().nth(1).unwrap_or("/");
            let name = target.split('?').next().unwrap_or_default().trim_start_matches('/');
            let file = (!name.contains("..")).then(|| std::fs::read(dir.join(name)).ok()).flatten();
            let _ = match file {
                Some(body) => {
                    stream.write_all(format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes()).and_then(|()| stream.write_all(&body))
                }
                None => stream.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            };
        }
    });
    url
}

fn base_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| serve(artifacts().to_path_buf()))
}

/// Runs install.sh with `args` into `root`, with extra environment.
fn install(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new("sh")
        .arg(SCRIPT)
        .args(args)
        .env("DESTDIR", root)
        .env("BASE_URL", base_url())
        .env("ARCH", "amd64")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .expect("run install.sh")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn succeeded(out: &Output) -> String {
    let all = text(out);
    assert!(out.status.success(), "install.sh failed ({}):\n{all}", out.status);
    assert!(!all.contains('\u{1b}'), "NO_COLOR: no escape sequences:\n{all}");
    all
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every file below `root`, relative.
fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(root).expect("prefix").display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn fresh_install_then_rerun_keeps_the_config() {
    let root = scratch("fresh");
    let out = succeeded(&install(&root, &[], &[]));
    assert!(out.contains("[INFO] verified conntrackd-linux-amd64 (sha256 "), "{out}");
    assert!(out.contains("[INFO] wrote the default configuration to /etc/conntrackd/conntrackd.toml"), "{out}");
    assert!(out.contains("the service was not started"), "{out}");
    for path in INSTALLED {
        assert!(root.join(path).is_file(), "{path} missing after install: {:?}", files(&root));
    }
    let binary = std::fs::read(root.join(INSTALLED[0])).expect("binary");
    assert_eq!(binary, std::fs::read(artifacts().join("conntrackd-linux-amd64")).expect("artifact"), "the served binary");
    assert_eq!(read(&root, "etc/conntrackd/conntrackd.toml"), CONTRIB_CONFIG, "the default config is contrib's");
    let version = Command::new(root.join(INSTALLED[0])).arg("version").output().expect("run installed binary");
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("conntrackd "), "the installed binary runs");

    let edited = format!("{CONTRIB_CONFIG}# edited by the operator\n");
    std::fs::write(root.join("etc/conntrackd/conntrackd.toml"), &edited).expect("edit config");
    let out = succeeded(&install(&root, &[], &[]));
    assert!(out.contains("[INFO] /etc/conntrackd/conntrackd.toml exists; keeping it"), "{out}");
    assert_eq!(read(&root, "etc/conntrackd/conntrackd.toml"), edited, "a re-run keeps the config");
    let listing = files(&root);
    assert!(!listing.iter().any(|f| f.contains(".new.")), "no temporary files left: {listing:?}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn from_a_local_directory_needs_no_server() {
    let root = scratch("from");
    let dir = artifacts().display().to_string();
    let out = Command::new("sh")
        .arg(SCRIPT)
        .args(["--from", &dir])
        .env("DESTDIR", &root)
        .env("BASE_URL", "http://127.0.0.1:9/nothing-listens-here")
        .env("NO_COLOR", "1")
        .output()
        .expect("run install.sh");
    let all = succeeded(&out);
    assert!(all.contains(&format!("[INFO] installing from {dir}")), "{all}");
    for path in INSTALLED {
        assert!(root.join(path).is_file(), "{path} missing: {:?}", files(&root));
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn checksum_mismatch_installs_nothing() {
    let bad = scratch("bad-artifacts");
    for entry in std::fs::read_dir(artifacts()).expect("artifacts").flatten() {
        std::fs::copy(entry.path(), bad.join(entry.file_name())).expect("copy artifact");
    }
    let mut binary = std::fs::OpenOptions::new().append(true).open(bad.join("conntrackd-linux-amd64")).expect("open");
    binary.write_all(b"tampered").expect("tamper");
    let url = serve(bad.clone());
    let root = scratch("mismatch");
    let out = install(&root, &[], &[("BASE_URL", &url)]);
    let all = text(&out);
    assert!(!out.status.success(), "a mismatch must fail:\n{all}");
    assert!(all.contains("[ERROR] checksum mismatch for conntrackd-linux-amd64: expected "), "{all}");
    assert!(all.contains("nothing was installed"), "{all}");
    assert_eq!(files(&root), Vec::<String>::new(), "nothing installed");
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&bad);
}

#[test]
fn with_geoip_from_a_local_file_adds_the_section_once() {
    let root = scratch("geoip");
    let db = root.with_extension("mmdb");
    std::fs::write(&db, mmdb::city_db("London")).expect("write mmdb");
    let geoip_file = db.display().to_string();
    let env = [("GEOIP_FILE", geoip_file.as_str())];
    let out = succeeded(&install(&root, &["--with-geoip"], &env));
    assert!(out.contains("[INFO] installed the GeoIP database as /var/lib/conntrackd/GeoLite2-City.mmdb"), "{out}");
    assert!(out.contains("[INFO] added a [geoip] section"), "{out}");
    let installed = root.join("var/lib/conntrackd/GeoLite2-City.mmdb");
    assert_eq!(std::fs::read(&installed).expect("db"), std::fs::read(&db).expect("db"));
    let out = succeeded(&install(&root, &[], &[("WITH_GEOIP", "1"), ("GEOIP_FILE", &geoip_file)]));
    assert!(out.contains("already uses it"), "{out}");
    let config = read(&root, "etc/conntrackd/conntrackd.toml");
    assert_eq!(config.matches("\n[geoip]").count(), 1, "one section after two runs:\n{config}");
    assert!(config.contains("database = \"/var/lib/conntrackd/GeoLite2-City.mmdb\""), "{config}");
    // The installed binary accepts the resulting file (database path moved into the root).
    let check = Command::new(root.join(INSTALLED[0]))
        .args(["check", "--config"])
        .arg(root.join("etc/conntrackd/conntrackd.toml"))
        .arg(format!("--geoip.database={}", installed.display()))
        .output()
        .expect("conntrackd check");
    assert!(check.status.success(), "conntrackd check: {}", text(&check));
    let _ = std::fs::remove_file(&db);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn with_geoip_from_a_url_takes_the_mmdb_out_of_a_tarball_and_prints_no_secrets() {
    let served = scratch("geoip-served");
    let inner = served.join("GeoLite2-City_20261128");
    std::fs::create_dir_all(&inner).expect("mkdir");
    let db = mmdb::city_db("London");
    std::fs::write(inner.join("GeoLite2-City.mmdb"), &db).expect("write mmdb");
    let tar = Command::new("tar").arg("-czf").arg(served.join("geoip.tar.gz")).arg("-C").arg(&served).arg("GeoLite2-City_20261128").status();
    assert!(tar.expect("tar").success());
    let geoip_url = format!("{}/geoip.tar.gz?edition_id=GeoLite2-City&license_key=SECRETKEY", serve(served.clone()));
    let base = base_url().replace("http://", "http://mirror:hunter2@");
    let root = scratch("geoip-url");
    let out = install(&root, &["--with-geoip"], &[("GEOIP_URL", &geoip_url), ("BASE_URL", &base)]);
    let all = succeeded(&out);
    assert_eq!(std::fs::read(root.join("var/lib/conntrackd/GeoLite2-City.mmdb")).expect("installed db"), db);
    assert!(all.contains("downloading from http://***@127.0.0.1:"), "{all}");
    assert!(!all.contains("hunter2") && !all.contains("SECRETKEY"), "secrets printed:\n{all}");
    // A failed download names the URL without its secrets.
    let missing = format!("{base}/missing");
    let empty_root = scratch("geoip-url-missing");
    let out = install(&empty_root, &[], &[("BASE_URL", &missing)]);
    let _ = std::fs::remove_dir_all(&empty_root);
    let all = text(&out);
    assert!(!out.status.success() && all.contains("[ERROR] cannot download http://***@127.0.0.1:"), "{all}");
    assert!(!all.contains("hunter2"), "{all}");
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&served);
}

#[test]
fn with_geoip_refuses_a_file_that_is_not_a_database() {
    let root = scratch("geoip-bad");
    let bogus = root.with_extension("txt");
    std::fs::write(&bogus, "not a database").expect("write");
    let out = install(&root, &["--with-geoip"], &[("GEOIP_FILE", &bogus.display().to_string())]);
    assert!(!out.status.success() && text(&out).contains("is not a MaxMind DB"), "{}", text(&out));
    assert_eq!(files(&root), Vec::<String>::new(), "nothing installed");
    let out = install(&root, &["--with-geoip"], &[]);
    assert!(!out.status.success() && text(&out).contains("needs GEOIP_FILE"), "{}", text(&out));
    let _ = std::fs::remove_file(&bogus);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn uninstall_removes_what_it_added_and_keeps_config_and_data() {
    let root = scratch("uninstall");
    let db = root.with_extension("mmdb");
    std::fs::write(&db, mmdb::city_db("London")).expect("write mmdb");
    succeeded(&install(&root, &["--with-geoip"], &[("GEOIP_FILE", &db.display().to_string())]));
    let out = succeeded(&install(&root, &["--uninstall"], &[]));
    assert!(out.contains("[INFO] removed /usr/local/bin/conntrackd"), "{out}");
    assert_eq!(files(&root), ["etc/conntrackd/conntrackd.toml", "var/lib/conntrackd/GeoLite2-City.mmdb"]);
    succeeded(&install(&root, &["--uninstall"], &[]));
    let _ = std::fs::remove_file(&db);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn refuses_to_run_as_a_normal_user_without_destdir() {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", SCRIPT])
        .env("NO_COLOR", "1")
        .env_remove("DESTDIR")
        .output()
        .expect("setpriv (util-linux) is needed");
    assert!(!out.status.success() && text(&out).contains("[ERROR] run as root"), "{}", text(&out));
}

#[test]
fn shellcheck_passes() {
    let out = Command::new("shellcheck").args(["--shell=sh", "--severity=style", SCRIPT]).output();
    let out = out.expect("shellcheck is missing: install the Debian package shellcheck (`cargo xtask setup` does)");
    assert!(out.status.success(), "shellcheck:\n{}", text(&out));
}
