//! contrib/install.sh against artifacts made by `cargo xtask dist` (packaging
//! the debug binary, so no release build runs in the tests), served by a
//! small HTTP server on 127.0.0.1, into temporary roots (DESTDIR): a fresh
//! install, a re-run, `--from`, a checksum mismatch, `--uninstall`, the root
//! check, and shellcheck. The GeoIP step: `install_geoip.rs`.
mod install_support;
#[path = "common/mmdb.rs"]
mod mmdb;

use std::{io::Write, process::Command};

use install_support::*;

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
fn uninstall_removes_what_it_added_and_keeps_config_and_data() {
    let root = scratch("uninstall");
    let served = scratch("uninstall-served");
    std::fs::write(served.join("City.mmdb"), mmdb::city_db("London")).expect("write mmdb");
    let url = format!("{}/City.mmdb", serve(served.clone()));
    succeeded(&install(&root, &["--with-geoip"], &[("GEOIP_URL", &url)]));
    assert!(root.join("etc/systemd/system/conntrackd-geoip.timer").is_file(), "{:?}", files(&root));
    let out = succeeded(&install(&root, &["--uninstall"], &[]));
    assert!(out.contains("[INFO] removed /usr/local/bin/conntrackd"), "{out}");
    assert!(out.contains("[INFO] removed /etc/systemd/system/conntrackd-geoip.timer"), "{out}");
    assert_eq!(
        files(&root),
        ["etc/conntrackd/conntrackd.toml", "etc/conntrackd/geoip.env", "var/lib/conntrackd/City.mmdb", "var/lib/conntrackd/City.mmdb.source"]
    );
    succeeded(&install(&root, &["--uninstall"], &[]));
    let _ = std::fs::remove_dir_all(&served);
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
