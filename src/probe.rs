//! `gsup probe ready|alive|health`: exit 0 when the endpoint answers 2xx, 1 otherwise
//! (refused, timed out, any other status), 2 on usage — for Docker's
//! `HEALTHCHECK CMD ["gsup", "probe", "ready"]`, so images need no curl (DESIGN §2).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::cli::{ConfigFlags, ProbeArgs, ProbeKind};
use crate::config;
use crate::http::client;
use crate::redact;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

pub fn run(args: &ProbeArgs, env: &config::Env, cwd: &Path) -> i32 {
    let timeout = match args.timeout.as_deref().map(config::flag_duration).transpose() {
        Ok(timeout) => timeout.unwrap_or(DEFAULT_TIMEOUT),
        Err(message) => {
            eprintln!("gsup probe: --timeout: {message}");
            return 2;
        }
    };
    let url = match &args.url {
        Some(url) => url.clone(),
        None => match default_url(args, env, cwd) {
            Ok(url) => url,
            Err(message) => {
                eprintln!("gsup probe: {message}");
                return 2;
            }
        },
    };
    let Some(parts) = client::split_url(&url) else {
        eprintln!(
            "gsup probe: --url {}: expected http://HOST:PORT/PATH",
            redact::urls(&url)
        );
        return 2;
    };
    let url = redact::urls(&url);
    let what = args.kind.map_or("up", kind_name);
    match client::request(&parts.target(), "GET", &parts.path, timeout) {
        Ok(answer) if (200..300).contains(&answer.status) => {
            println!("{what}: {} from {url}", answer.status);
            0
        }
        Ok(answer) => {
            println!("not {what}: {} from {url}: {}", answer.status, answer.text().trim());
            1
        }
        Err(error) => {
            println!("not {what}: {url}: {error}");
            1
        }
    }
}

fn kind_name(kind: ProbeKind) -> &'static str {
    match kind {
        ProbeKind::Ready => "ready",
        ProbeKind::Alive => "alive",
        ProbeKind::Health => "healthy",
    }
}

/// The alias of the endpoint on the configured `[http] listen`, found the way `run`
/// finds its config; a wildcard listen address is probed on loopback.
fn default_url(args: &ProbeArgs, env: &config::Env, cwd: &Path) -> Result<String, String> {
    let flags = ConfigFlags {
        config: args.config.clone(),
        ..ConfigFlags::default()
    };
    let loaded = config::load(&flags, env, cwd).map_err(|errors| errors.to_string())?;
    let Some(listen) = loaded.config.http.listen else {
        return Err("[http] listen is off: give --url".to_string());
    };
    let path = match args.kind {
        Some(ProbeKind::Ready) | None => "/ready",
        Some(ProbeKind::Alive) => "/alive",
        Some(ProbeKind::Health) => "/health",
    };
    Ok(format!("http://{}{path}", loopback_if_wildcard(listen)))
}

fn loopback_if_wildcard(addr: SocketAddr) -> SocketAddr {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_probed_on_loopback() {
        assert_eq!(
            loopback_if_wildcard("0.0.0.0:9090".parse().unwrap()).to_string(),
            "127.0.0.1:9090"
        );
        assert_eq!(
            loopback_if_wildcard("[::]:9090".parse().unwrap()).to_string(),
            "[::1]:9090"
        );
        assert_eq!(
            loopback_if_wildcard("10.1.2.3:9090".parse().unwrap()).to_string(),
            "10.1.2.3:9090"
        );
    }
}
