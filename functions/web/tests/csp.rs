//! The landing page under its own Content-Security-Policy: every asset the
//! page and its stylesheet load must be allowed by the policy and served.

use honeydue_testkit::TestClient;

fn policy(csp: &str) -> Vec<(String, Vec<String>)> {
    csp.split(';')
        .filter_map(|d| {
            let mut parts = d.split_whitespace();
            let name = parts.next()?.to_string();
            Some((name, parts.map(str::to_string).collect()))
        })
        .collect()
}

/// Whether `url` may load under `directive` (falling back to default-src).
fn allowed(csp: &[(String, Vec<String>)], directive: &str, url: &str) -> bool {
    let sources = csp
        .iter()
        .find(|(n, _)| n == directive)
        .or_else(|| csp.iter().find(|(n, _)| n == "default-src"))
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    if sources.iter().any(|s| s == "'none'") {
        return false;
    }
    if url.starts_with("data:") {
        return sources.iter().any(|s| s == "data:");
    }
    let same_origin = url.starts_with('/') && !url.starts_with("//");
    same_origin && sources.iter().any(|s| s == "'self'")
}

/// `(tag, attributes)` of every start tag.
fn tags(html: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>').unwrap_or(rest.len());
        let inner = &rest[..end];
        if inner.starts_with('/') || inner.starts_with('!') {
            continue;
        }
        let name = inner
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut attrs = Vec::new();
        let mut s = &inner[name.len()..];
        while let Some(eq) = s.find("=\"") {
            let key = s[..eq]
                .split_whitespace()
                .last()
                .unwrap_or("")
                .to_ascii_lowercase();
            let after = &s[eq + 2..];
            let close = after.find('"').unwrap_or(after.len());
            attrs.push((key, after[..close].to_string()));
            s = &after[(close + 1).min(after.len())..];
        }
        out.push((name, attrs));
    }
    out
}

fn attr<'a>(attrs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `url(...)` references of a stylesheet, with the directive each needs.
fn css_urls(css: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut in_font_face = false;
    for line in css.lines() {
        if line.contains("@font-face") {
            in_font_face = true;
        }
        let mut rest = line;
        while let Some(i) = rest.find("url(") {
            rest = &rest[i + 4..];
            let end = rest.find(')').unwrap_or(rest.len());
            let u = rest[..end]
                .trim()
                .trim_matches('"')
                .trim_matches('\'')
                .to_string();
            out.push((if in_font_face { "font-src" } else { "img-src" }, u));
        }
        if line.contains("@import") {
            out.push(("style-src", line.to_string()));
        }
        if line.contains('}') {
            in_font_face = false;
        }
    }
    out
}

#[tokio::test]
async fn the_page_loads_everything_it_uses_under_its_own_policy() {
    let c = TestClient::new(web::app());
    let r = c.get("/", None).await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp_header = r.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(csp_header, web::CSP);
    let csp = policy(&csp_header);
    let html = r.text();

    let mut loads: Vec<(&'static str, String)> = Vec::new();
    for (tag, attrs) in tags(&html) {
        assert!(
            attr(&attrs, "style").is_none(),
            "inline style attribute on <{tag}> would be blocked"
        );
        match tag.as_str() {
            "style" => panic!("inline <style> would be blocked by style-src 'self'"),
            "script" => match attr(&attrs, "src") {
                Some(src) => loads.push(("script-src", src.to_string())),
                None => panic!("inline <script> would be blocked"),
            },
            "link" => {
                let rel = attr(&attrs, "rel").unwrap_or("");
                let href = attr(&attrs, "href").unwrap_or("").to_string();
                if rel.contains("stylesheet") {
                    loads.push(("style-src", href));
                } else if rel.contains("icon") {
                    loads.push(("img-src", href));
                }
            }
            "img" => loads.push(("img-src", attr(&attrs, "src").unwrap_or("").to_string())),
            _ => {}
        }
    }
    assert!(
        loads.iter().any(|(d, _)| *d == "style-src"),
        "the page has a stylesheet"
    );

    let mut i = 0;
    while i < loads.len() {
        let (directive, url) = loads[i].clone();
        assert!(
            allowed(&csp, directive, &url),
            "{url} is blocked by {directive} in {csp_header}"
        );
        if !url.starts_with("data:") {
            let r = c.get(&url, None).await;
            assert_eq!(r.status, 200, "{url}");
            let ct = r.headers["content-type"].to_str().unwrap().to_string();
            match directive {
                "style-src" => {
                    assert!(ct.starts_with("text/css"), "{url}: {ct}");
                    loads.extend(css_urls(&r.text()));
                }
                "img-src" => assert!(ct.starts_with("image/"), "{url}: {ct}"),
                "font-src" => assert!(ct.starts_with("font/"), "{url}: {ct}"),
                _ => {}
            }
        }
        i += 1;
    }
    assert!(
        loads.iter().filter(|(d, _)| *d == "img-src").count() >= 2,
        "images from the page and the CSS were checked"
    );
}

#[test]
fn the_checker_catches_what_the_policy_forbids() {
    let csp = policy(web::CSP);
    assert!(
        !allowed(&csp, "script-src", "/static/app.js"),
        "no scripts at all"
    );
    assert!(
        !allowed(&csp, "style-src", "https://fonts.example.com/x.css"),
        "no third-party styles"
    );
    assert!(!allowed(&csp, "img-src", "//cdn.example.com/x.png"));
    assert!(allowed(&csp, "img-src", "data:image/png;base64,AAAA"));
    assert!(
        !allowed(&csp, "connect-src", "/api/"),
        "default-src 'none' covers the rest"
    );
    assert_eq!(
        css_urls("@font-face { src: url(\"/f.woff2\"); }\n.a { background: url(/b.svg) }"),
        vec![
            ("font-src", "/f.woff2".to_string()),
            ("img-src", "/b.svg".to_string())
        ]
    );
}

#[tokio::test]
async fn security_headers_and_missing_assets() {
    let c = TestClient::new(web::app());
    let r = c.get("/static/site.css", None).await;
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    assert_eq!(r.headers["x-frame-options"], "DENY");
    let r = c.get("/static/../Cargo.toml", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(c.get("/static/nope.css", None).await.status, 404);
}
