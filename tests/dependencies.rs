//! DESIGN §5 dependency checks against real servers on loopback: Redis (port 6390) and
//! PostgreSQL (5432), both started by .ci/run; `tcp` and `exec` (`redis-cli ping`,
//! `pg_isready`) checks pass and readiness follows them.

mod common;

use common::*;

fn running(check: &str) -> bool {
    start(cmd("sh", &["-c", check]), &[]).wait_code(PATIENCE) == 0
}

#[test]
fn real_redis_and_postgresql_pass() {
    let redis = running("redis-cli -p 6390 ping");
    let postgres = running("pg_isready -q -h 127.0.0.1 -p 5432");
    if !prerequisite(
        redis && postgres,
        "Redis on 127.0.0.1:6390 and PostgreSQL on 127.0.0.1:5432 (.ci/run starts both)",
    ) {
        return;
    }
    let config = "[[dependencies]]\nname = \"redis\"\ntcp = \"127.0.0.1:6390\"\ninterval = \"200ms\"\n\
         [[dependencies]]\nname = \"redis-ping\"\nexec = [\"redis-cli\", \"-p\", \"6390\", \"ping\"]\ninterval = \"200ms\"\n\
         [[dependencies]]\nname = \"postgres\"\ntcp = \"127.0.0.1:5432\"\ninterval = \"200ms\"\n\
         [[dependencies]]\nname = \"pg_isready\"\nexec = [\"pg_isready\", \"-h\", \"127.0.0.1\", \"-p\", \"5432\"]\ninterval = \"200ms\"\n";
    let (mut gsup, addr, _config) = gsup_with_api(config, &[CHILD, "echo", "up", "forever"], &[]);
    gsup.expect_line("up");
    let mut health = serde_json::Value::Null;
    let all_ok = wait_until(PATIENCE, || {
        let body = http(&addr, "GET", "/health", &[]).2;
        health = serde_json::from_str(&body).unwrap_or_default();
        ["redis", "redis-ping", "postgres", "pg_isready"]
            .iter()
            .all(|name| health["checks"][name]["status"] == "ok")
    });
    assert!(all_ok, "{health}");
    assert_eq!(health["status"], "healthy");
    assert_eq!(http(&addr, "GET", "/ready", &[]).0, 200);
    gsup.signal(libc::SIGTERM);
    gsup.wait_code(PATIENCE);
}
