//! Tells people from machines by what they send. Pure and deliberately conservative:
//! privacy proxies that fetch every image (Apple Mail Privacy Protection) and link
//! scanners of mail gateways are "machine"; a person behind Gmail's image proxy is not.

/// Apple's privacy proxy fetches with a bare `Mozilla/5.0`; gateways and tools name
/// themselves.
pub fn is_machine_open(user_agent: Option<&str>) -> bool {
    match user_agent.map(str::trim) {
        None | Some("") => true,
        Some("Mozilla/5.0") => true,
        Some(ua) => has_machine_marker(ua),
    }
}

/// Security scanners follow every link before the person does.
pub fn is_machine_click(user_agent: Option<&str>) -> bool {
    match user_agent.map(str::trim) {
        None | Some("") => true,
        Some(ua) => has_machine_marker(ua),
    }
}

fn has_machine_marker(ua: &str) -> bool {
    const MARKERS: &[&str] = &[
        "bot", "spider", "crawler", "curl/", "wget/", "python-requests", "go-http-client", "java/",
        "barracuda", "mimecast", "proofpoint", "symantec", "forcepoint", "trendmicro", "safelinks",
        "headlesschrome", "yahoomailproxy",
    ];
    let lower = ua.to_ascii_lowercase();
    MARKERS.iter().any(|m| lower.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_and_machines() {
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";
        assert!(!is_machine_open(Some(iphone)));
        assert!(!is_machine_open(Some("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)")));
        assert!(is_machine_open(Some("Mozilla/5.0")));
        assert!(is_machine_open(None));
        assert!(is_machine_click(Some("Mozilla/5.0 (compatible; Barracuda Sentinel)")));
        assert!(is_machine_click(Some("python-requests/2.31")));
        assert!(!is_machine_click(Some(iphone)));
    }
}
