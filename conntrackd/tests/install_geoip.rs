//! contrib/install.sh's GeoIP step, with a local HTTP server standing in for
//! DB-IP and MaxMind (their base URLs overridden): the default download of
//! DB-IP City Lite with its month fallback, MaxMind's GeoLite2-City with the
//! account and key as basic auth, GEOIP_FILE / GEOIP_URL, the City check done
//! by the installed binary, the attribution, and the monthly refresh timer
//! whose command (`--geoip-only`) is run as systemd would run it.
mod install_support;
#[path = "common/mmdb.rs"]
mod mmdb;

use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};

use install_support::*;

const DB: &str = "var/lib/conntrackd/City.mmdb";
const TIMER: &str = "etc/systemd/system/conntrackd-geoip.timer";
const SERVICE: &str = "etc/systemd/system/conntrackd-geoip.service";

/// A DB-IP City Lite shaped file (its `database_type`) with `city`.
fn dbip_db(city: &str) -> Vec<u8> {
    mmdb::build("DBIP-City-Lite", &[("203.0.113.0/24", mmdb::city_record(Some(city), Some(("Testland", "TL")), Some((1.5, 2.5))))])
}

fn gzip(path: &Path) {
    assert!(Command::new("gzip").arg("-f").arg(path).status().expect("gzip").success());
}

/// `dbip-city-lite-<month>.mmdb.gz` holding `db`, in `dir`.
fn put_dbip(dir: &Path, month: &str, db: &[u8]) {
    let plain = dir.join(format!("dbip-city-lite-{month}.mmdb"));
    std::fs::write(&plain, db).expect("write mmdb");
    gzip(&plain);
}

/// The functions of the script, called from `sh` (INSTALL_SH_LIBRARY=1).
fn months(arg: &str) -> std::process::Output {
    Command::new("sh").args(["-c", ". \"$0\"; dbip_months \"$1\"", SCRIPT, arg]).env("INSTALL_SH_LIBRARY", "1").env("NO_COLOR", "1").output().expect("sh")
}

#[test]
fn dbip_month_is_this_month_then_the_one_before() {
    for (month, expected) in [("2026-12", "2026-12 2026-11"), ("2026-01", "2026-01 2025-12"), ("2026-10", "2026-10 2026-09"), ("2000-03", "2000-03 2000-02")] {
        let out = months(month);
        assert!(out.status.success(), "{month}: {}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected, "{month}");
    }
    for bad in ["2026-13", "2026-00", "26-01", "2026-1", "latest"] {
        let out = months(bad);
        assert!(!out.status.success() && text(&out).contains(&format!("GEOIP_MONTH={bad}: expected YYYY-MM")), "{bad}: {}", text(&out));
    }
}

/// The seed's one-liner, `curl … | sudo WITH_GEOIP=1 sh -`: the script on
/// stdin, no GeoIP variable but the stand-in host. This month's file is not
/// published yet, so last month's is installed; then the timer's command
/// picks up the next month's file, and a second run changes nothing.
#[test]
fn with_geoip_and_no_source_installs_dbip_city_lite_and_a_monthly_refresh() {
    let served = scratch("dbip-served");
    std::fs::create_dir_all(served.join("free")).unwrap();
    let (november, january) = (dbip_db("Novembertown"), dbip_db("Januaryville"));
    put_dbip(&served.join("free"), "2026-11", &november);
    let dbip = Server::start(served.clone(), None);
    let root = scratch("dbip");
    let out = Command::new("sh")
        .arg("-")
        .stdin(std::fs::File::open(SCRIPT).expect("open install.sh"))
        .env("DESTDIR", &root)
        .env("BASE_URL", base_url())
        .env("ARCH", "amd64")
        .env("NO_COLOR", "1")
        .env("WITH_GEOIP", "1")
        .env("GEOIP_MONTH", "2026-12")
        .env("DBIP_BASE_URL", format!("{}/free", dbip.url))
        .env("MAXMIND_BASE_URL", NO_HOST)
        .output()
        .expect("sh -");
    let all = succeeded(&out);
    assert_eq!(dbip.targets(), ["/free/dbip-city-lite-2026-12.mmdb.gz", "/free/dbip-city-lite-2026-11.mmdb.gz"]);
    assert!(all.contains("[WARN] http://127.0.0.1:") && all.contains("dbip-city-lite-2026-12.mmdb.gz is not available"), "{all}");
    assert!(all.contains("[INFO] verified the GeoIP database: DBIP-City-Lite, built "), "the binary opened it as a City database:\n{all}");
    assert!(all.contains("[INFO] GeoIP data: IP Geolocation by DB-IP (https://db-ip.com), licensed under CC BY 4.0"), "attribution:\n{all}");
    assert!(std::fs::read(root.join(DB)).expect("installed db") == november, "the gunzipped file");
    let source = read(&root, &format!("{DB}.source"));
    assert!(source.contains("source: DB-IP IP-to-City Lite") && source.contains("dbip-city-lite-2026-11.mmdb.gz") && source.contains("CC BY 4.0"), "{source}");
    let config = read(&root, "etc/conntrackd/conntrackd.toml");
    assert!(config.contains("\n[geoip]\n") && config.contains("database = \"/var/lib/conntrackd/City.mmdb\""), "{config}");
    let lookup =
        Command::new(root.join(INSTALLED[0])).args(["geoip", "lookup", "203.0.113.9"]).arg(format!("--geoip.database={}", root.join(DB).display())).output();
    let lookup = lookup.expect("conntrackd geoip lookup");
    assert!(String::from_utf8_lossy(&lookup.stdout).contains("\"dst_city\":\"Novembertown\""), "{}", text(&lookup));

    // The timer and the service it starts.
    let timer = read(&root, TIMER);
    assert!(timer.contains("OnCalendar=*-*-03 04:00:00") && timer.contains("Persistent=true") && timer.contains("WantedBy=timers.target"), "{timer}");
    let service = read(&root, SERVICE);
    assert!(service.contains("Type=oneshot") && service.contains("EnvironmentFile=-/etc/conntrackd/geoip.env"), "{service}");
    let exec = service.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
    let units = scratch("dbip-units");
    for unit in [TIMER, SERVICE] {
        std::fs::copy(root.join(unit), units.join(Path::new(unit).file_name().unwrap())).unwrap();
    }
    let verify =
        Command::new("systemd-analyze").args(["verify", "--man=no", "conntrackd-geoip.timer", "conntrackd-geoip.service"]).current_dir(&units).output();
    let verify = verify.expect("systemd-analyze is missing: install the Debian package systemd (`cargo xtask setup` does)");
    assert!(verify.status.success() && verify.stderr.is_empty(), "systemd-analyze verify: {}", text(&verify));
    let _ = std::fs::remove_dir_all(&units);
    assert_eq!(exec, "/bin/sh /usr/local/lib/conntrackd/install.sh --geoip-only");
    assert_eq!(std::fs::read(root.join("usr/local/lib/conntrackd/install.sh")).unwrap(), std::fs::read(SCRIPT).unwrap(), "the released script");
    let env_file = root.join("etc/conntrackd/geoip.env");
    assert_eq!(std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777, 0o600);
    let env = read(&root, "etc/conntrackd/geoip.env");
    assert_eq!(env, format!("DBIP_BASE_URL='{}/free'\n", dbip.url), "only what differs from the defaults");

    // What the timer runs, with the environment it reads, next month.
    put_dbip(&served.join("free"), "2027-01", &january);
    let refresh = || run_service(&root, exec, &env, &[("GEOIP_MONTH", "2027-01")]);
    let all = succeeded(&refresh());
    assert!(all.contains("[INFO] installed the GeoIP database as /var/lib/conntrackd/City.mmdb (DB-IP IP-to-City Lite)"), "{all}");
    assert!(std::fs::read(root.join(DB)).unwrap() == january, "next month's file");
    assert!(!all.contains("[WARN]"), "the config already uses the file:\n{all}");
    let all = succeeded(&refresh());
    assert!(all.contains("[INFO] /var/lib/conntrackd/City.mmdb is already this database"), "{all}");
    assert_eq!(config, read(&root, "etc/conntrackd/conntrackd.toml"), "the refresh leaves the config alone");
    let leftovers: Vec<String> = files(&root).into_iter().filter(|f| f.contains(".new.")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // No file for either month: a clear error, the installed file untouched.
    let out = run_service(&root, exec, &env, &[("GEOIP_MONTH", "2030-05")]);
    let all = text(&out);
    assert!(!out.status.success() && all.contains("no DB-IP City Lite file for 2030-05 or 2030-04"), "{all}");
    assert!(std::fs::read(root.join(DB)).unwrap() == january, "a failed refresh keeps the file");
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&served);
}

/// Runs the service's ExecStart below `root` with the variables of its
/// EnvironmentFile (`KEY='value'` lines), as systemd would.
fn run_service(root: &Path, exec: &str, env_file: &str, extra: &[(&str, &str)]) -> std::process::Output {
    let mut words = exec.split_whitespace();
    let (shell, script) = (words.next().expect("shell"), words.next().expect("script"));
    let mut cmd = Command::new(shell);
    cmd.arg(root.join(script.trim_start_matches('/'))).args(words).env("DESTDIR", root).env("NO_COLOR", "1");
    cmd.env("DBIP_BASE_URL", NO_HOST).env("MAXMIND_BASE_URL", NO_HOST);
    for line in env_file.lines() {
        let (key, value) = line.split_once('=').expect("KEY=value");
        cmd.env(key, value.trim_matches('\''));
    }
    cmd.envs(extra.iter().copied()).output().expect("run the service command")
}

#[test]
fn with_maxmind_credentials_downloads_geolite2_city_with_basic_auth() {
    let served = scratch("maxmind-served");
    let inner = served.join("GeoLite2-City_20261128");
    std::fs::create_dir_all(&inner).unwrap();
    let db = mmdb::city_db("Maxtown");
    std::fs::write(inner.join("GeoLite2-City.mmdb"), &db).unwrap();
    std::fs::create_dir_all(served.join("geoip/databases/GeoLite2-City")).unwrap();
    let tarball = served.join("geoip/databases/GeoLite2-City/download");
    let tar = Command::new("tar").arg("-czf").arg(&tarball).arg("-C").arg(&served).arg("GeoLite2-City_20261128").status();
    assert!(tar.expect("tar").success());
    let basic = Command::new("sh").args(["-c", "printf '%s' 424242:Key_SECRET_0 | base64"]).output().expect("base64");
    let expected_auth = format!("Basic {}", String::from_utf8_lossy(&basic.stdout).trim());
    let maxmind = Server::start(served.clone(), Some(expected_auth.clone()));
    let root = scratch("maxmind");
    let env = [("MAXMIND_ACCOUNT_ID", "424242"), ("MAXMIND_LICENSE_KEY", "Key_SECRET_0"), ("MAXMIND_BASE_URL", maxmind.url.as_str())];
    let all = succeeded(&install(&root, &["--with-geoip"], &env));
    let requests = maxmind.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].target, "/geoip/databases/GeoLite2-City/download?suffix=tar.gz");
    assert_eq!(requests[0].authorization.as_deref(), Some(expected_auth.as_str()), "account and key as basic auth");
    assert!(std::fs::read(root.join(DB)).unwrap() == db, "the .mmdb out of the tarball");
    assert!(all.contains("[INFO] downloading GeoLite2-City from http://127.0.0.1:") && all.contains("(account 424242)"), "{all}");
    assert!(all.contains("[INFO] GeoIP data: This product includes GeoLite2 Data created by MaxMind"), "{all}");
    assert!(!all.contains("Key_SECRET_0"), "the license key is never printed:\n{all}");
    let env_file = read(&root, "etc/conntrackd/geoip.env");
    assert!(env_file.contains("MAXMIND_ACCOUNT_ID='424242'\n") && env_file.contains("MAXMIND_LICENSE_KEY='Key_SECRET_0'\n"), "{env_file}");
    assert_eq!(std::fs::metadata(root.join("etc/conntrackd/geoip.env")).unwrap().permissions().mode() & 0o777, 0o600);

    // A wrong key: MaxMind answers 401, nothing changes, the key is not shown.
    let wrong = [("MAXMIND_ACCOUNT_ID", "424242"), ("MAXMIND_LICENSE_KEY", "Key_WRONG_9"), ("MAXMIND_BASE_URL", maxmind.url.as_str())];
    let out = install(&root, &["--geoip-only"], &wrong);
    let all = text(&out);
    assert!(!out.status.success() && all.contains("check MAXMIND_ACCOUNT_ID and MAXMIND_LICENSE_KEY") && !all.contains("Key_WRONG_9"), "{all}");
    let out = install(&root, &["--geoip-only"], &[("MAXMIND_ACCOUNT_ID", "424242")]);
    assert!(!out.status.success() && text(&out).contains("needs both MAXMIND_ACCOUNT_ID and MAXMIND_LICENSE_KEY"), "{}", text(&out));
    assert!(std::fs::read(root.join(DB)).unwrap() == db, "a failed download keeps the file");
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&served);
}

#[test]
fn with_geoip_from_a_local_file_adds_the_section_once_and_no_timer() {
    let root = scratch("geoip");
    let db = root.with_extension("mmdb");
    std::fs::write(&db, mmdb::city_db("London")).expect("write mmdb");
    let geoip_file = db.display().to_string();
    let env = [("GEOIP_FILE", geoip_file.as_str())];
    let out = succeeded(&install(&root, &["--with-geoip"], &env));
    assert!(out.contains("[INFO] installed the GeoIP database as /var/lib/conntrackd/City.mmdb (local file)"), "{out}");
    assert!(out.contains("[INFO] verified the GeoIP database: GeoLite2-City, built "), "{out}");
    assert!(out.contains("[INFO] added a [geoip] section"), "{out}");
    assert!(out.contains("the database is a local file (GEOIP_FILE): no refresh timer"), "{out}");
    assert!(!root.join(TIMER).exists());
    assert_eq!(std::fs::read(root.join(DB)).expect("db"), std::fs::read(&db).expect("db"));
    let out = succeeded(&install(&root, &[], &[("WITH_GEOIP", "1"), ("GEOIP_FILE", &geoip_file)]));
    assert!(out.contains("already uses it"), "{out}");
    let config = read(&root, "etc/conntrackd/conntrackd.toml");
    assert_eq!(config.matches("\n[geoip]").count(), 1, "one section after two runs:\n{config}");
    // The installed binary accepts the resulting file (database path moved into the root).
    let check = Command::new(root.join(INSTALLED[0]))
        .args(["check", "--config"])
        .arg(root.join("etc/conntrackd/conntrackd.toml"))
        .arg(format!("--geoip.database={}", root.join(DB).display()))
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
    assert_eq!(std::fs::read(root.join(DB)).expect("installed db"), db);
    assert!(all.contains("downloading from http://***@127.0.0.1:"), "{all}");
    assert!(!all.contains("hunter2") && !all.contains("SECRETKEY"), "secrets printed:\n{all}");
    assert!(!read(&root, &format!("{DB}.source")).contains("SECRETKEY"), "the provenance file has no secrets either");
    assert_eq!(read(&root, "etc/conntrackd/geoip.env"), format!("GEOIP_URL='{geoip_url}'\n"), "the refresh downloads the same URL");
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
fn with_geoip_refuses_what_is_not_a_city_database() {
    let root = scratch("geoip-bad");
    let bogus = root.with_extension("txt");
    std::fs::write(&bogus, "not a database").expect("write");
    let out = install(&root, &["--with-geoip"], &[("GEOIP_FILE", &bogus.display().to_string())]);
    assert!(!out.status.success() && text(&out).contains("is not a MaxMind DB"), "{}", text(&out));
    assert_eq!(files(&root), Vec::<String>::new(), "nothing installed");
    // A MaxMind DB of the wrong kind: the binary refuses it by its database_type.
    let country = root.with_extension("country.mmdb");
    std::fs::write(&country, mmdb::build("GeoLite2-Country", &[("203.0.113.0/24", mmdb::city_record(None, Some(("Testland", "TL")), None))])).unwrap();
    let out = install(&root, &["--with-geoip"], &[("GEOIP_FILE", &country.display().to_string())]);
    let all = text(&out);
    assert!(!out.status.success() && all.contains("is not a City database conntrackd can use") && all.contains("GeoLite2-Country"), "{all}");
    assert_eq!(files(&root), Vec::<String>::new(), "nothing installed");
    // No source and no DB-IP host reachable: nothing installed, every way out named.
    let out = install(&root, &["--with-geoip"], &[("GEOIP_MONTH", "2026-03")]);
    let all = text(&out);
    assert!(
        !out.status.success()
            && all.contains("no DB-IP City Lite file for 2026-03 or 2026-02")
            && all.contains("set GEOIP_FILE, GEOIP_URL or MAXMIND_ACCOUNT_ID"),
        "{all}"
    );
    assert_eq!(files(&root), Vec::<String>::new(), "nothing installed");
    let _ = std::fs::remove_file(&bogus);
    let _ = std::fs::remove_file(&country);
    let _ = std::fs::remove_dir_all(&root);
}
