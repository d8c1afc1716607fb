//! The status page's files, served by the agent itself: no CDN, no fonts
//! from elsewhere and no build step, so the page works on a management
//! network without internet and reads the same as the source. The page
//! polls `/status.json` and draws it with DOM calls (`textContent`, never
//! `innerHTML`: backend names and reasons are operator input).

/// One file of the page.
#[derive(Clone, Copy, Debug)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const INDEX: Asset = Asset { content_type: "text/html; charset=utf-8", body: include_bytes!("page/index.html") };

/// The files under `/assets/`, by name.
const ASSETS: &[(&str, Asset)] = &[
    ("app.js", Asset { content_type: "text/javascript; charset=utf-8", body: include_bytes!("page/app.js") }),
    ("style.css", Asset { content_type: "text/css; charset=utf-8", body: include_bytes!("page/style.css") }),
];

/// The file for a request path: "/" is the page, "/assets/NAME" its scripts and styles.
pub fn asset(path: &str) -> Option<Asset> {
    if path == "/" || path == "/index.html" {
        return Some(INDEX);
    }
    let name = path.strip_prefix("/assets/")?;
    ASSETS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(a: Asset) -> &'static str {
        std::str::from_utf8(a.body).expect("the page's files are UTF-8")
    }

    #[test]
    fn serves_the_page_and_its_assets_only() {
        assert!(asset("/").unwrap().content_type.starts_with("text/html"));
        assert!(asset("/assets/app.js").unwrap().content_type.starts_with("text/javascript"));
        assert!(asset("/assets/style.css").unwrap().content_type.starts_with("text/css"));
        for missing in ["", "/assets/", "/assets/../page.rs", "/assets/app.js/", "/app.js", "/status.json"] {
            assert!(asset(missing).is_none(), "{missing:?}");
        }
    }

    #[test]
    fn the_page_links_only_its_own_assets() {
        let html = text(INDEX);
        let linked: Vec<&str> =
            html.split(['"', '\'']).filter(|s| s.starts_with("/assets/") || s.contains("://")).collect();
        assert_eq!(linked.len(), ASSETS.len(), "{linked:?}");
        for path in linked {
            assert!(asset(path).is_some(), "{path} is linked but not served");
        }
    }

    #[test]
    fn nothing_is_fetched_from_elsewhere_or_parsed_as_html() {
        for (name, a) in ASSETS.iter().copied().chain([("index.html", INDEX)]) {
            let t = text(a);
            for banned in ["http://", "https://", "//cdn", "@import", "innerHTML", "outerHTML", "insertAdjacentHTML"] {
                assert!(!t.contains(banned), "{name} contains {banned}");
            }
            assert!(!t.contains("document.write"), "{name}");
        }
    }
}
