//! Every environment variable name Lyre knows, once, as a const (harp-compat.md §2), and the
//! warnings for `HP_*` / `LYRE_*` names that Lyre does not read. Owns no parsing of values.

pub const HP_SHARED_KEY: &str = "HP_SHARED_KEY";
pub const HP_SHARED_KEY_FILE: &str = "HP_SHARED_KEY_FILE";
pub const NC_INSTANCE_URL: &str = "NC_INSTANCE_URL";
pub const HP_EXAPPS_ADDRESS: &str = "HP_EXAPPS_ADDRESS";
pub const HP_EXAPPS_HTTPS_ADDRESS: &str = "HP_EXAPPS_HTTPS_ADDRESS";
pub const HP_FRP_ADDRESS: &str = "HP_FRP_ADDRESS";
pub const HP_TRUSTED_PROXY_IPS: &str = "HP_TRUSTED_PROXY_IPS";
pub const HP_LOG_LEVEL: &str = "HP_LOG_LEVEL";
pub const HP_VERBOSE_START: &str = "HP_VERBOSE_START";
pub const HP_TIMEOUT_CONNECT: &str = "HP_TIMEOUT_CONNECT";
pub const HP_TIMEOUT_CLIENT: &str = "HP_TIMEOUT_CLIENT";
pub const HP_TIMEOUT_SERVER: &str = "HP_TIMEOUT_SERVER";
pub const HP_TIMEOUT_TUNNEL: &str = "HP_TIMEOUT_TUNNEL";
pub const HP_SESSION_LIFETIME: &str = "HP_SESSION_LIFETIME";
pub const HP_BLACKLIST_COUNT: &str = "HP_BLACKLIST_COUNT";
pub const HP_BLACKLIST_WINDOW: &str = "HP_BLACKLIST_WINDOW";
pub const HP_FRP_DISABLE_TLS: &str = "HP_FRP_DISABLE_TLS";
pub const HP_FRP_CERT_VALIDITY_DAYS: &str = "HP_FRP_CERT_VALIDITY_DAYS";

pub const LYRE_CERTS_DIR: &str = "LYRE_CERTS_DIR";
pub const LYRE_WORKERS: &str = "LYRE_WORKERS";
pub const LYRE_PIN_CPUS: &str = "LYRE_PIN_CPUS";
pub const LYRE_DRIVER: &str = "LYRE_DRIVER";
pub const LYRE_PUMP: &str = "LYRE_PUMP";
pub const LYRE_CONTROL_ADDRESS: &str = "LYRE_CONTROL_ADDRESS";
pub const LYRE_ROUTES: &str = "LYRE_ROUTES";
pub const LYRE_DOCKER_SOCKET: &str = "LYRE_DOCKER_SOCKET";
pub const LYRE_FORWARD_SHARED_KEY: &str = "LYRE_FORWARD_SHARED_KEY";
/// Extra CA PEM for an https `NC_INSTANCE_URL`; read into `Config::nc_ca_file` at start.
pub const LYRE_NC_CA_FILE: &str = "LYRE_NC_CA_FILE";
/// `glibc` keeps glibc's own memcpy choice (see `runtime::memcpy`); read before anything else.
pub const LYRE_MEMCPY: &str = "LYRE_MEMCPY";
/// Cap on concurrent client connections (HaRP's HAProxy global `maxconn`).
pub const LYRE_MAX_CONNECTIONS: &str = "LYRE_MAX_CONNECTIONS";

/// Every `HP_*` / `LYRE_*` variable `lyre serve` reads (for `lyre serve --help`).
pub fn read_names() -> &'static [&'static str] {
    READ
}

/// Names Lyre reads.
const READ: &[&str] = &[
    HP_SHARED_KEY,
    HP_SHARED_KEY_FILE,
    HP_EXAPPS_ADDRESS,
    HP_EXAPPS_HTTPS_ADDRESS,
    HP_FRP_ADDRESS,
    HP_TRUSTED_PROXY_IPS,
    HP_LOG_LEVEL,
    HP_VERBOSE_START,
    HP_TIMEOUT_CONNECT,
    HP_TIMEOUT_CLIENT,
    HP_TIMEOUT_SERVER,
    HP_TIMEOUT_TUNNEL,
    HP_SESSION_LIFETIME,
    HP_BLACKLIST_COUNT,
    HP_BLACKLIST_WINDOW,
    HP_FRP_DISABLE_TLS,
    HP_FRP_CERT_VALIDITY_DAYS,
    LYRE_CERTS_DIR,
    LYRE_WORKERS,
    LYRE_PIN_CPUS,
    LYRE_DRIVER,
    LYRE_PUMP,
    LYRE_CONTROL_ADDRESS,
    LYRE_ROUTES,
    LYRE_DOCKER_SOCKET,
    LYRE_FORWARD_SHARED_KEY,
    LYRE_NC_CA_FILE,
    LYRE_MEMCPY,
    LYRE_MAX_CONNECTIONS,
];

const NO_SPOE: &str = "Lyre decides in-process and has no SPOE agent";
const NO_WAITS: &str = "Lyre is a single process and has no start-up waits";
const NO_WATCHDOG: &str = "Lyre has no separate agent process to watch";
const NO_K8S: &str = "Lyre does not implement HaRP's Kubernetes backend (§2.7)";
const EXAPP_SIDE: &str = "it is read by ExApp containers, not by the proxy";

/// HaRP names (or ExApp-side names often copied next to them) that Lyre accepts but ignores,
/// with the reason given to the operator.
const IGNORED: &[(&str, &str)] = &[
    ("HP_SPOA_ADDRESS", NO_SPOE),
    ("HP_WAIT_AGENT_HTTP", NO_WAITS),
    ("HP_WAIT_SPOA", NO_WAITS),
    ("HP_WAIT_FRP", NO_WAITS),
    ("HP_WAIT_INTERVAL", NO_WAITS),
    ("HP_WATCHDOG_ENABLED", NO_WATCHDOG),
    ("HP_WATCHDOG_INTERVAL", NO_WATCHDOG),
    ("HP_WATCHDOG_FAILS", NO_WATCHDOG),
    ("HP_K8S_ENABLED", NO_K8S),
    ("HP_K8S_NAMESPACE", NO_K8S),
    ("HP_K8S_API_SERVER", NO_K8S),
    ("HP_K8S_CA_FILE", NO_K8S),
    ("HP_K8S_BEARER_TOKEN", NO_K8S),
    ("HP_K8S_BEARER_TOKEN_FILE", NO_K8S),
    ("HP_K8S_VERIFY_SSL", NO_K8S),
    ("HP_K8S_STORAGE_CLASS", NO_K8S),
    ("HP_K8S_DEFAULT_STORAGE_SIZE", NO_K8S),
    ("HP_K8S_HOST_ALIASES", NO_K8S),
    ("HP_FRP_PORT", EXAPP_SIDE),
    ("HP_EXAPP_SOCK", EXAPP_SIDE),
];

/// One warning per `HP_*` / `LYRE_*` name that Lyre does not read, sorted by name so the
/// start-up log is stable. Only names are echoed, never values (a typo'd key variable would
/// otherwise leak the key).
pub fn unread_name_warnings<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<&str> = names
        .filter(|n| n.starts_with("HP_") || n.starts_with("LYRE_"))
        .filter(|n| !READ.contains(n))
        .collect();
    names.sort_unstable();
    names.dedup();
    names.into_iter().map(unread_name_warning).collect()
}

fn unread_name_warning(name: &str) -> String {
    if let Some((_, why)) = IGNORED.iter().find(|(n, _)| *n == name) {
        return format!("{name}: not used by Lyre ({why}); ignored");
    }
    let known = READ.iter().chain(IGNORED.iter().map(|(n, _)| n));
    match known.min_by_key(|k| edit_distance(name, k)) {
        Some(best) if edit_distance(name, best) <= 2 => {
            format!("{name}: unknown variable, ignored; did you mean {best}?")
        }
        _ => format!(
            "{name}: unknown variable, ignored (check the spelling against harp-compat.md §2)"
        ),
    }
}

/// Levenshtein distance over bytes; names are short ASCII, so the O(n*m) table is tiny.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unread_names_get_one_warning_each() {
        let names = [
            "HP_SHARED_KEY",
            "PATH",
            "HP_TIMEOUT_CLIENTT",
            "HP_SPOA_ADDRESS",
            "HP_K8S_ENABLED",
            "LYRE_WORKRES",
            "HP_ZZZ_SOMETHING_ELSE",
            "HP_WAIT_FRP",
        ];
        let w = unread_name_warnings(names.into_iter());
        assert_eq!(
            w,
            vec![
                "HP_K8S_ENABLED: not used by Lyre (Lyre does not implement HaRP's Kubernetes backend (§2.7)); ignored".to_string(),
                "HP_SPOA_ADDRESS: not used by Lyre (Lyre decides in-process and has no SPOE agent); ignored".into(),
                "HP_TIMEOUT_CLIENTT: unknown variable, ignored; did you mean HP_TIMEOUT_CLIENT?".into(),
                "HP_WAIT_FRP: not used by Lyre (Lyre is a single process and has no start-up waits); ignored".into(),
                "HP_ZZZ_SOMETHING_ELSE: unknown variable, ignored (check the spelling against harp-compat.md §2)".into(),
                "LYRE_WORKRES: unknown variable, ignored; did you mean LYRE_WORKERS?".into(),
            ]
        );
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("abc", "abd"), 1);
        assert_eq!(edit_distance("abc", "ab"), 1);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("ab", "ba"), 2);
    }
}
